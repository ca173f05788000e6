import { Histogram, type Registry } from 'prom-client';

/** Series Prometheus itself adds to every scrape target; rules may use them beside sluice's own. */
const PROMETHEUS_SERIES = ['up'];

/** Every series name a scrape of `registry` can produce: histograms expand to _bucket, _sum, _count. */
export function exportedSeriesNames(registry: Registry): Set<string> {
  const names = new Set(PROMETHEUS_SERIES);
  for (const metric of registry.getMetricsAsArray()) {
    if (metric instanceof Histogram) {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
    } else {
      names.add(metric.name);
    }
  }
  return names;
}

const KEYWORDS = new Set([
  'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
]);

/**
 * The metric names a PromQL expression selects. A lexical scan, enough for the rules and panels kept
 * in ops/: strings, label matchers, ranges, Grafana variables and grouping clauses are removed first,
 * then every remaining identifier not called as a function is a metric name.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\w+/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()/g)) {
    const name = m[1];
    if (name !== undefined && !KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}
