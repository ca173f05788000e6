import { describe, expect, test } from 'bun:test';
import type { ScenarioResult } from '../../bench/result.ts';
import { scalingOf } from '../../bench/scaling.ts';
import { SCALING_WORKERS, scalingScenarios } from '../../bench/scenarios.ts';
import { formatTables } from '../../bench/table.ts';

function result(name: string, workers: number | null, throughput: number, cores: number): ScenarioResult {
  return {
    name,
    command: 'ingest',
    database: 'postgres',
    workers,
    unit: 'req/s',
    throughput,
    events: throughput * 5,
    p50_ms: 1,
    p99_ms: 2,
    max_ms: 3,
    cpu: {
      interval_s: 5,
      events: throughput * 5,
      us_per_event: { app: 10, postgres: 1, kafka: null },
      cores: { app: cores, postgres: 0.1, kafka: null },
      machine: { busy_cores: cores + 0.25, other_cores: 0.2, softirq_cores: 0.05, steal_cores: 0, iowait_cores: 0 },
    },
    peak_rss_mib: 100,
    peak_rss_per_process_mib: workers === null ? [100] : Array.from({ length: workers }, () => 100),
    baseline: 'raw-bun-serve-json',
    ratio: 0.1,
    target: null,
    target_met: null,
    rss_target_met: true,
  };
}

describe('bench scaling figure (1 vs N ingest workers)', () => {
  test('without a worker setting there are no scaling scenarios, and the report says it was not measured', () => {
    expect(scalingScenarios(undefined)).toEqual([]);
    const scaling = scalingOf([result('ingest-json-fast_ack', null, 1000, 0.9)], undefined, 2, 2);
    expect(scaling.setting).toBeNull();
    expect(scaling.rows).toEqual([]);
    expect(scaling.note).toContain('not measured');
  });

  test('naming the setting adds ingest-only scenarios at 1 and N workers, and the run yields speed-up per scenario', () => {
    const scenarios = scalingScenarios('SLUICE_INGEST_WORKERS');
    expect(scenarios.map((s) => s.name)).toEqual(
      SCALING_WORKERS.flatMap((n) => [`ingest-json-fast_ack-workers-${n}`, `ingest-ndjson-1000-fast_ack-workers-${n}`]),
    );
    expect(scenarios.every((s) => s.command === 'ingest' && s.workers !== undefined)).toBe(true);

    const results = [
      result('json-fast_ack', null, 500, 0.5),
      result('ingest-json-fast_ack-workers-2', 2, 3000, 1.6),
      result('ingest-json-fast_ack-workers-1', 1, 2000, 0.95),
    ];
    const scaling = scalingOf(results, 'SLUICE_INGEST_WORKERS', 2, 2);
    expect(scaling.rows).toEqual([
      { scenario: 'ingest-json-fast_ack', workers: [1, 2], throughput: [2000, 3000], sluice_cores: [0.95, 1.6], machine_cores: [1.2, 1.85], speedup: 1.5 },
    ]);
    const tables = formatTables({
      date: '2026-11-28',
      command: 'bun run bench',
      quick: false,
      machine: { cores: 2, bun: '1.4.5', platform: 'linux-x64', load_average: { start: 0.1, end: 0.2 }, busy_note: '' },
      baselines: [],
      scenarios: results,
      scaling,
    });
    expect(tables).toContain('| ingest-json-fast_ack | 1 / 2 | 2,000 / 3,000 | 0.95 / 1.60 | 1.20 / 1.85 | 1.50 |');
    expect(tables).toContain('| ingest-json-fast_ack-workers-2 | req/s | 3,000 |');
    expect(tables).toContain('| 100 + 100 |');
  });
});
