import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { createMetrics } from '../../src/metrics.ts';
import { promtool } from '../support/promtool.ts';
import { exportedSeriesNames, metricNamesIn } from '../support/promql.ts';

const RULES = fileURLToPath(new URL('../../ops/prometheus/alerts.yml', import.meta.url));
const RULE_TESTS = fileURLToPath(new URL('../../ops/prometheus/alerts.test.yml', import.meta.url));

const rulesFile = z.object({
  groups: z.array(
    z.object({
      name: z.string(),
      rules: z.array(
        z.object({
          alert: z.string(),
          expr: z.string(),
          for: z.string().optional(),
          labels: z.object({ severity: z.enum(['critical', 'warning', 'info']) }),
          annotations: z.object({ summary: z.string(), description: z.string(), runbook: z.string() }),
        }),
      ),
    }),
  ),
});

const ruleTestsFile = z.object({
  tests: z.array(
    z.object({
      alert_rule_test: z.array(z.object({ alertname: z.string(), exp_alerts: z.array(z.unknown()).optional() })).default([]),
    }),
  ),
});

const alerts = rulesFile.parse(Bun.YAML.parse(readFileSync(RULES, 'utf8'))).groups.flatMap((g) => g.rules);

describe('ops/prometheus/alerts.yml', () => {
  test('`promtool check rules` accepts it, counting every alert', async () => {
    const check = await promtool(['check', 'rules', RULES]);
    expect(check.stderr).toBe('');
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  test('`promtool test rules` passes its unit tests', async () => {
    const run = await promtool(['test', 'rules', RULE_TESTS]);
    expect(`${run.stdout}${run.stderr}`).toContain('SUCCESS');
    expect(run.exitCode).toBe(0);
  });

  test('the alerts an operator needs are all there', () => {
    expect(alerts.map((a) => a.alert).sort()).toEqual([
      'SluiceBreakerOpen',
      'SluiceDeadRecordsWaiting',
      'SluiceDown',
      'SluiceForwarderLagging',
      'SluiceForwarderStuck',
      'SluiceIngestErrors',
      'SluiceJournalIntegrity',
      'SluiceJournalOverRetention',
      'SluiceKafkaUnreachable',
      'SluiceOutboxBacklogGrowing',
      'SluiceOutboxOldestPendingTooOld',
      'SluicePartitionsUnowned',
      'SluiceQuotaThrottling',
      'SluiceRecordsDead',
    ]);
  });

  test('every alert selects only series sluice exports (or Prometheus adds)', () => {
    const known = exportedSeriesNames(createMetrics().registry);
    const unknown = alerts.flatMap((a) => metricNamesIn(a.expr).filter((n) => !known.has(n)).map((n) => `${a.alert}: ${n}`));
    expect(unknown).toEqual([]);
    // The scan must find something in each expression, or the check above proves nothing.
    expect(alerts.filter((a) => metricNamesIn(a.expr).length === 0).map((a) => a.alert)).toEqual([]);
  });

  test('a per-tenant alert names the tenant in its summary and description', () => {
    const perTenant = alerts.filter((a) => /by \(tenant\)/.test(a.expr));
    expect(perTenant.length).toBeGreaterThanOrEqual(5);
    const missing = perTenant.filter(
      (a) => !a.annotations.summary.includes('{{ $labels.tenant }}') || !a.annotations.description.includes('{{ $labels.tenant }}'),
    );
    expect(missing.map((a) => a.alert)).toEqual([]);
  });

  test('every alert has a unit test where it fires and one where it stays quiet', () => {
    const cases = ruleTestsFile.parse(Bun.YAML.parse(readFileSync(RULE_TESTS, 'utf8'))).tests.flatMap((t) => t.alert_rule_test);
    const uncovered = alerts.flatMap((a) => {
      const mine = cases.filter((c) => c.alertname === a.alert);
      const gaps: string[] = [];
      if (!mine.some((c) => (c.exp_alerts ?? []).length > 0)) gaps.push(`${a.alert}: never expected to fire`);
      if (!mine.some((c) => (c.exp_alerts ?? []).length === 0)) gaps.push(`${a.alert}: never expected quiet`);
      return gaps;
    });
    expect(uncovered).toEqual([]);
  });
});
