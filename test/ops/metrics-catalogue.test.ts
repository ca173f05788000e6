import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createMetrics } from '../../src/metrics.ts';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The rows of the README's metrics tables: name → "type | labels". */
function catalogue(): Map<string, string> {
  const readme = readFileSync(README, 'utf8');
  const start = readme.indexOf('\n## Metrics\n');
  const end = readme.indexOf('\n## ', start + 1);
  const rows = new Map<string, string>();
  for (const m of readme.slice(start, end).matchAll(/^\| `(\w+)` \| (\w+) \|([\w, ]*)\|/gm)) {
    const [, name, type, labels] = m;
    if (name !== undefined && type !== undefined && labels !== undefined) rows.set(name, `${type} | ${labels.trim()}`);
  }
  return rows;
}

test('the README catalogues every exported metric with its type and labels', async () => {
  const metrics = createMetrics();
  const types = new Map([...(await metrics.registry.metrics()).matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => [name, type]));
  const expected = new Map(
    metrics.registry.getMetricsAsArray().map((metric) => {
      // prom-client keeps the label names on the metric but leaves them out of its types.
      const labels =
        'labelNames' in metric && Array.isArray(metric.labelNames)
          ? metric.labelNames.filter((l): l is string => typeof l === 'string')
          : [];
      return [metric.name, `${types.get(metric.name)} | ${labels.join(', ')}`];
    }),
  );
  expect(Object.fromEntries(catalogue())).toEqual(Object.fromEntries(expected));
});
