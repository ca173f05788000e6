import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { createMetrics } from '../../src/metrics.ts';
import { promtool } from '../support/promtool.ts';
import { exportedSeriesNames, metricNamesIn } from '../support/promql.ts';

const DASHBOARD = fileURLToPath(new URL('../../ops/grafana/dashboard.json', import.meta.url));
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

const datasourceRef = z.object({ type: z.string(), uid: z.string() });
const dashboardFile = z.object({
  uid: z.string().min(1),
  title: z.string().min(1),
  schemaVersion: z.number(),
  templating: z.object({
    list: z.array(
      z.object({
        name: z.string(),
        type: z.string(),
        query: z.union([z.string(), z.object({ query: z.string() })]),
      }),
    ),
  }),
  panels: z.array(
    z.object({
      id: z.number(),
      type: z.string(),
      title: z.string(),
      gridPos: z.object({ h: z.number(), w: z.number(), x: z.number(), y: z.number() }),
      datasource: datasourceRef.optional(),
      targets: z.array(z.object({ refId: z.string(), expr: z.string(), datasource: datasourceRef })).optional(),
    }),
  ),
});

const dashboard = dashboardFile.parse(JSON.parse(readFileSync(DASHBOARD, 'utf8')));
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');
const targets = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, ...t })));

/** What Grafana substitutes before a query reaches Prometheus, with values Prometheus accepts. */
function asPrometheusSees(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$tenant', '.*');
}

describe('ops/grafana/dashboard.json', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'sluice-dashboard-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test('is a Grafana dashboard with a Prometheus data source variable and a tenant variable', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(vars.tenant).toMatchObject({ type: 'query', query: { query: 'label_values(sluice_outbox_pending, tenant)' } });
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    expect(dashboard.panels.filter((p) => p.gridPos.x + p.gridPos.w > 24).map((p) => p.title)).toEqual([]);
  });

  test('every query runs on the chosen data source', () => {
    expect(targets.length).toBeGreaterThan(0);
    expect(queryPanels.filter((p) => (p.targets ?? []).length === 0).map((p) => p.title)).toEqual([]);
    for (const t of targets) {
      expect({ panel: t.panel.title, datasource: t.datasource }).toEqual({ panel: t.panel.title, datasource: DATASOURCE });
    }
  });

  test('every query selects only series sluice exports', () => {
    const known = exportedSeriesNames(createMetrics().registry);
    const unknown = targets.flatMap((t) => metricNamesIn(t.expr).filter((n) => !known.has(n)).map((n) => `${t.panel.title}: ${n}`));
    expect(unknown).toEqual([]);
    expect(targets.filter((t) => metricNamesIn(t.expr).length === 0).map((t) => t.panel.title)).toEqual([]);
    // The tenant variable lists its values from a series too.
    const query = dashboard.templating.list.find((v) => v.name === 'tenant')?.query;
    const tenantSource = /^label_values\((\w+), tenant\)$/.exec(typeof query === 'string' ? query : (query?.query ?? ''))?.[1];
    expect(tenantSource !== undefined && known.has(tenantSource)).toBe(true);
  });

  test('every query is valid PromQL (checked by promtool as recording rules)', async () => {
    const rules = {
      groups: [
        {
          name: 'dashboard',
          rules: targets.map((t) => ({ record: `dashboard:panel${t.panel.id}:${t.refId}`, expr: asPrometheusSees(t.expr) })),
        },
      ],
    };
    const file = join(scratch, 'dashboard-queries.yml');
    writeFileSync(file, JSON.stringify(rules));
    const check = await promtool(['check', 'rules', file]);
    expect(check.stderr).toBe('');
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toContain(`SUCCESS: ${targets.length} rules found`);
  });

  test('per-tenant panels follow the tenant variable', () => {
    const unfiltered = targets.filter((t) => /by \([^)]*\btenant\b/.test(t.expr) && !t.expr.includes('tenant=~"$tenant"'));
    expect(unfiltered.map((t) => `${t.panel.title}: ${t.expr}`)).toEqual([]);
  });

  test('shows every metric family sluice exports', () => {
    const shown = new Set(targets.flatMap((t) => metricNamesIn(t.expr)).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    const families = createMetrics().registry.getMetricsAsArray().map((m) => m.name);
    expect(families.filter((f) => !shown.has(f))).toEqual([]);
  });

  test('has a panel for each thing an operator looks for', () => {
    const panelFor = (pattern: RegExp): string[] =>
      queryPanels.filter((p) => (p.targets ?? []).some((t) => pattern.test(t.expr))).map((p) => p.title);
    const wanted: Record<string, RegExp> = {
      backlog: /sluice_outbox_pending\b/,
      'ingest throughput by status': /sum by \(status\) \(rate\(sluice_ingest_requests_total/,
      'published per tenant': /sum by \(tenant\) \(rate\(sluice_published_total/,
      'ingest p50': /histogram_quantile\(0\.5, .*sluice_ingest_request_duration_seconds_bucket/,
      'ingest p99': /histogram_quantile\(0\.99, .*sluice_ingest_request_duration_seconds_bucket/,
      'publish latency': /histogram_quantile\(0\.99, .*sluice_publish_duration_seconds_bucket/,
      'breaker state': /sluice_breaker_state\b/,
      'dead records': /sluice_dead_total\b/,
      'quota throttled': /sluice_quota_throttled_total\b/,
      'journal size': /sluice_journal_bytes\b/,
      'journal segments': /sluice_journal_segments\b/,
      'forwarder lag': /sluice_forwarder_lag_records\b/,
      'partitions owned': /sluice_partitions_owned\b/,
    };
    const missing = Object.entries(wanted).filter(([, pattern]) => panelFor(pattern).length === 0).map(([what]) => what);
    expect(missing).toEqual([]);
  });
});
