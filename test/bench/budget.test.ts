import { describe, expect, test } from 'bun:test';
import { budgetOf, budgetPlan, minimumLatencyNote } from '../../bench/budget.ts';
import type { CpuFigures } from '../../bench/cpu-meter.ts';
import type { BaselineResult, BenchReport, ScenarioResult } from '../../bench/result.ts';
import { SCENARIOS } from '../../bench/scenarios.ts';
import { formatTables } from '../../bench/table.ts';

const cpu = (us: Partial<CpuFigures['us_per_event']>): CpuFigures => {
  const us_per_event = { app: null, postgres: null, kafka: null, ...us };
  return { interval_s: 5, events: 1000, us_per_event, cores: { app: null, postgres: null, kafka: null } };
};

function ceiling(name: string, throughput: number, us: Partial<CpuFigures['us_per_event']>): BaselineResult {
  return { name, description: '', unit: 'events/s', throughput, events: throughput * 5, p50_ms: 1, p99_ms: 2, max_ms: 3, cpu: cpu(us) };
}

// Round figures: HTTP 10 µs (single JSON) or 0.5 (NDJSON-1000), Postgres 8 µs a row, broker 2 µs a record.
const BASELINES = [
  ceiling('raw-bun-serve-json', 100_000, { app: 10, load: 9 }),
  ceiling('raw-bun-serve-ndjson-1000', 2_000_000, { app: 0.5, load: 0.2 }),
  ceiling('postgres-batched-insert', 100_000, { app: 1.5, postgres: 8 }),
  ceiling('kafka-producer-perf', 300_000, { app: 3, kafka: 2 }),
];

function scenario(name: string, us: Partial<CpuFigures['us_per_event']>): ScenarioResult {
  const s = SCENARIOS.find((x) => x.name === name);
  if (s === undefined) throw new Error(name);
  return {
    name,
    command: s.command,
    database: 'postgres',
    workers: null,
    unit: 'events/s',
    throughput: 1000,
    events: 5000,
    p50_ms: 1,
    p99_ms: 2,
    max_ms: 3,
    cpu: cpu(us),
    peak_rss_mib: 100,
    peak_rss_per_process_mib: [100],
    baseline: s.baseline,
    ratio: 0.01,
    target: s.target?.text ?? null,
    target_met: false,
    rss_target_met: true,
  };
}

function budget(name: string, us: Partial<CpuFigures['us_per_event']>, cores = 2) {
  const s = SCENARIOS.find((x) => x.name === name);
  const plan = s === undefined ? undefined : budgetPlan(s);
  if (plan === undefined) throw new Error(`${name} has no rate target`);
  return budgetOf(plan, scenario(name, us), BASELINES, cores);
}

describe('bench budget of a rate target', () => {
  test('every rate target of issue 11 has a plan with the floors its events go through; the latency target has none', () => {
    const plans = Object.fromEntries(SCENARIOS.flatMap((s) => (s.target === undefined ? [] : [[s.name, budgetPlan(s) ?? null]])));
    expect(plans).toEqual({
      'ingest-json-fast_ack': { rate: { ratio: 0.5 }, http: 'raw-bun-serve-json', outbox: true, publishes: false, minimum: 'durable-minimum-json-fast_ack' },
      'json-sync': { rate: { ratio: 0.2 }, http: 'raw-bun-serve-json', outbox: true, publishes: true, minimum: 'durable-minimum-serve-json-sync' },
      'json-fast_ack': { rate: { ratio: 0.35 }, http: 'raw-bun-serve-json', outbox: true, publishes: true, minimum: 'durable-minimum-serve-json-fast_ack' },
      'ndjson-1000-fast_ack': { rate: { events_per_s: 150_000 }, http: 'raw-bun-serve-ndjson-1000', outbox: true, publishes: true },
      'end-to-end-exactly_once': { rate: { ratio: 0.5 }, http: 'raw-bun-serve-ndjson-1000', outbox: true, publishes: true },
      'publish-latency-5000': null,
    });
  });

  test('ingest alone: load, HTTP and the insert are the floors; the budget is what the cores leave per event at the asked rate', () => {
    // 0.5 × 100,000 = 50,000 events/s; floors 8 + 10 + 8 = 26 µs → 1.3 cores; budget 2e6/50,000 − 26 = 14 µs.
    const b = budget('ingest-json-fast_ack', { app: 20, postgres: 9, load: 8 });
    expect(b.target_rate).toBe(50_000);
    expect(b.rate_from).toBe('0.5 x raw-bun-serve-json (100,000/s)');
    expect(b.floor_us).toEqual({ load: 8, http: 10, postgres_insert: 8, postgres_claim_mark: null, broker: null });
    expect(b.unavoidable_us).toBe(26);
    expect(b.unavoidable_cores).toBeCloseTo(1.3, 10);
    expect(b.sluice_budget_us).toBeCloseTo(14, 10);
    // Charged: 20 − 10 (HTTP, among the floors) + 1 (Postgres beyond its floor) = 11.
    expect(b.sluice_us).toBe(20);
    expect(b.charged_us).toBe(11);
    expect(b.verdict).toBe('within budget');
  });

  test('serve: claim + mark and the broker join the floors, and what Postgres and the broker spend beyond them is charged', () => {
    // 0.35 × 100,000 = 35,000 events/s; floors 8 + 10 + 8 + 8 + 2 = 36 µs → 1.26 cores; budget 2e6/35,000 − 36 ≈ 21.14 µs.
    const b = budget('json-fast_ack', { app: 40, postgres: 30, kafka: 5, load: 8 });
    expect(b.floor_us).toEqual({ load: 8, http: 10, postgres_insert: 8, postgres_claim_mark: 8, broker: 2 });
    expect(b.unavoidable_cores).toBeCloseTo(1.26, 10);
    expect(b.sluice_budget_us).toBeCloseTo(2e6 / 35_000 - 36, 10);
    // 40 − 10 + (30 − 16) + (5 − 2) = 47.
    expect(b.charged_us).toBe(47);
    expect(b.verdict).toBe(`over budget by ${(47 / (2e6 / 35_000 - 36)).toFixed(1)}×`);
    // Below its floor, Postgres gives nothing back: the charge never falls under sluice's own work.
    expect(budget('json-fast_ack', { app: 40, postgres: 3, kafka: 1, load: 8 }).charged_us).toBe(30);
  });

  test('an absolute rate the floors alone cannot serve on these cores: no budget left, with the largest part named', () => {
    // 150,000 events/s × (4 + 0.5 + 8 + 8 + 2 = 22.5 µs) = 3.375 cores of 2.
    const b = budget('ndjson-1000-fast_ack', { app: 12, postgres: 20, kafka: 1, load: 4 });
    expect(b.rate_from).toBe('absolute');
    expect(b.target_rate).toBe(150_000);
    expect(b.unavoidable_cores).toBeCloseTo(3.375, 10);
    expect(b.sluice_budget_us).toBeLessThan(0);
    expect(b.verdict).toBe('no budget left: the unavoidable work alone needs 3.38 cores of 2 (most: Postgres insert, 1.20)');
    // The same work on 4 cores leaves a budget: the verdict depends on the machine, not on the figures alone.
    expect(budget('ndjson-1000-fast_ack', { app: 12, postgres: 20, kafka: 1, load: 4 }, 4).verdict).toMatch(/^over budget by /);
  });

  test('a rate the durable minimum of the write mode did not reach is out of reach here, whatever sluice spends; one it reached leaves the CPU verdict', () => {
    // Asked 50,000/s (0.5 × 100,000). The minimum does strictly less than sluice with the same requests.
    const slow = [...BASELINES, ceiling('durable-minimum-json-fast_ack', 20_000, { app: 15, postgres: 8, load: 9 })];
    const plan = budgetPlan(SCENARIOS.find((x) => x.name === 'ingest-json-fast_ack') as (typeof SCENARIOS)[number]);
    if (plan === undefined) throw new Error('no plan');
    const within = scenario('ingest-json-fast_ack', { app: 20, postgres: 9, load: 8 });
    const b = budgetOf(plan, within, slow, 2);
    expect(b.minimum_rate).toBe(20_000);
    // Within the CPU budget (as in the test above), and still out of reach: the verdict says which holds.
    expect(b.charged_us).toBeLessThanOrEqual(b.sluice_budget_us ?? Number.NaN);
    expect(b.verdict).toBe("out of reach here: durable-minimum-json-fast_ack, sluice's arrangement doing only what the guarantee costs, reached 20,000/s (0.40 of the rate asked); by CPU, sluice within budget");
    const fast = [...BASELINES, ceiling('durable-minimum-json-fast_ack', 60_000, { app: 15, postgres: 8, load: 9 })];
    expect(budgetOf(plan, within, fast, 2).verdict).toBe('within budget');
    // A minimum that did no better than sluice (1,000/s here) is no bound: the CPU verdict stands, and says so.
    const slower = [...BASELINES, ceiling('durable-minimum-json-fast_ack', 900, { app: 15, postgres: 8, load: 9 })];
    expect(budgetOf(plan, within, slower, 2).verdict).toBe('within budget (durable-minimum-json-fast_ack did no better than sluice: no bound)');
    // Within the noise of single runs (above 0.95 of the asked rate): no verdict of its own.
    const close = [...BASELINES, ceiling('durable-minimum-json-fast_ack', 48_000, { app: 15, postgres: 8, load: 9 })];
    expect(budgetOf(plan, within, close, 2).verdict).toBe('within budget');
    // A run with failures bounds nothing: as if not measured.
    const failed = [...BASELINES, { ...ceiling('durable-minimum-json-fast_ack', 20_000, { app: 15, postgres: 8, load: 9 }), note: '12 of 400000 requests failed' }];
    expect(budgetOf(plan, within, failed, 2).verdict).toBe('within budget');
    expect(budgetOf(plan, within, failed, 2).minimum_rate).toBeUndefined();
    // Not measured (an older results file): the CPU verdict alone, and no minimum reported.
    expect(budgetOf(plan, within, BASELINES, 2).minimum_rate).toBeUndefined();
    // With the machine's own figure for the minimum's run: how busy both cores were while it ran.
    // The mark it is read against: the busiest of the ceilings bound by CPU alone (not another minimum).
    const machine = (busy_cores: number) => ({ busy_cores, other_cores: 0.3, softirq_cores: 0.1, steal_cores: 0, iowait_cores: 0.05 });
    const withMachine = (b: BaselineResult, busy: number): BaselineResult => ({ ...b, cpu: { ...(b.cpu ?? cpu({})), machine: machine(busy) } });
    const measuredMachine = [
      ...BASELINES.map((b, i) => withMachine(b, [1.8, 1.7, 1.83, 1.75][i] ?? 0)),
      withMachine(ceiling('durable-minimum-json-sync', 10_000, { app: 20, postgres: 9, load: 9 }), 1.95),
      withMachine(ceiling('durable-minimum-json-fast_ack', 20_000, { app: 15, postgres: 8, load: 9 }), 1.614),
    ];
    const busy = budgetOf(plan, within, measuredMachine, 2);
    expect(busy.verdict).toBe(
      "out of reach here: durable-minimum-json-fast_ack, sluice's arrangement doing only what the guarantee costs, reached 20,000/s (0.40 of the rate asked), the machine 1.61 cores busy meanwhile (the busiest ceiling: 1.83); by CPU, sluice within budget",
    );
    expect(busy.minimum_machine_busy_cores).toBe(1.614);
    expect(b.minimum_machine_busy_cores).toBeUndefined();
    // Floors the cores cannot carry come first: that holds whatever any server reaches.
    const starved = budgetOf(plan, scenario('ingest-json-fast_ack', { app: 20, postgres: 9, load: 40 }), slow, 2);
    expect(starved.verdict).toMatch(/^no budget left: /);
  });

  test('publish latency: the durable minimum at the same rate, measured in the same run, says whether the target is out of reach here or the gap is sluice\'s', () => {
    const latency = SCENARIOS.find((x) => x.name === 'publish-latency-5000');
    if (latency === undefined) throw new Error('no publish-latency scenario');
    const minimum = (p99: number): BaselineResult => ({ ...ceiling('durable-minimum-publish-latency-5000', 5000, { app: 40 }), p50_ms: 12.4, p99_ms: p99 });
    // sluice's own run: p99 1,500 ms.
    const sluice = { ...scenario('publish-latency-5000', { app: 140 }), p99_ms: 1500 };
    expect(minimumLatencyNote(latency, sluice, [...BASELINES, minimum(31)])).toBe("durable-minimum-publish-latency-5000: p50 12.4 / p99 31.0 ms, within the target: the gap is sluice's");
    expect(minimumLatencyNote(latency, sluice, [...BASELINES, minimum(50.4)])).toBe(
      "out of reach here: durable-minimum-publish-latency-5000: p50 12.4 / p99 50.4 ms, sluice's arrangement doing only what the guarantee costs misses the target too",
    );
    // A minimum slower than sluice bounds nothing.
    expect(minimumLatencyNote(latency, sluice, [...BASELINES, minimum(1500)])).toBe('durable-minimum-publish-latency-5000: p50 12.4 / p99 1500.0 ms, no better than sluice: no bound');
    expect(minimumLatencyNote(latency, sluice, BASELINES)).toBeUndefined();
    expect(minimumLatencyNote(latency, sluice, [...BASELINES, { ...minimum(900), note: '3 requests failed' }])).toBe(
      'durable-minimum-publish-latency-5000: p50 12.4 / p99 900.0 ms, its run not clean (3 requests failed): no bound',
    );
    const other = SCENARIOS.find((x) => x.name === 'json-fast_ack');
    if (other === undefined) throw new Error('no json-fast_ack scenario');
    expect(minimumLatencyNote(other, sluice, [...BASELINES, minimum(500)])).toBeUndefined();
  });

  test('a figure not measured (no /proc, or a results file without the load) leaves the budget uncomputed, saying which', () => {
    const b = budget('end-to-end-exactly_once', { app: 30, postgres: 40, kafka: 5 });
    expect(b.target_rate).toBe(50_000);
    expect(b.floor_us).toBeNull();
    expect(b.charged_us).toBeNull();
    expect(b.verdict).toBe("not computed: the scenario's load µs not measured");
  });

  test('the tables print a budget row per rate target, the floors stated beneath, and the load column in the CPU table', () => {
    const scenarios = ['ingest-json-fast_ack', 'publish-latency-5000'].map((name) => {
      const s = scenario(name, { app: 20, postgres: 9, kafka: 3, load: 8 });
      const def = SCENARIOS.find((x) => x.name === name);
      const plan = def === undefined ? undefined : budgetPlan(def);
      return plan === undefined ? s : { ...s, budget: budgetOf(plan, s, BASELINES, 2) };
    });
    const [ingest] = scenarios;
    if (ingest?.cpu !== undefined) {
      ingest.cpu.app_engine = { jit: 4.25, gc: 0.5 };
      ingest.cpu.machine = { busy_cores: 1.966, other_cores: 0.412, softirq_cores: 0.1, steal_cores: 0, iowait_cores: 0 };
    }
    const report: BenchReport = {
      date: '2026-11-28',
      command: 'bun run bench',
      quick: true,
      machine: { cores: 2, bun: '1.4.5', platform: 'linux-x64', load_average: { start: 1, end: 1 }, busy_note: '' },
      baselines: BASELINES,
      scenarios,
    };
    const tables = formatTables(report);
    expect(tables).toContain(
      '| ingest-json-fast_ack | 50,000 | 0.5 x raw-bun-serve-json (100,000/s) | 8.0 | 10.0 | 8.0 | - | - | 1.30 of 2 | 14.0 | 20.0 | 11.0 | within budget |',
    );
    expect(tables).not.toContain('| publish-latency-5000 | 50,000');
    expect(tables).toContain('claim + mark (serve: published events): the Postgres ceiling');
    expect(tables).toContain('| of which its compiler / GC threads | total µs/event | load µs/event | machine cores busy (other) |');
    // The load is beside the total, not in it: 20 + 9 + 3 = 32. The engine's threads are part of sluice's 20, not added.
    // The machine's cores busy, and in brackets what no group was charged with; "-" when not measured.
    expect(tables).toContain('| publish-latency-5000 | 1,000 | 5.0 | 20.0 (-) | 9.0 (-) | 3.0 (-) | - | 32.0 | 8.0 (-) | - |');
    expect(tables).toContain('| ingest-json-fast_ack | 1,000 | 5.0 | 20.0 (-) | 9.0 (-) | 3.0 (-) | 4.3 / 0.5 | 32.0 | 8.0 (-) | 1.97 (0.41) |');
    // On cores shared with other work, the note says what a verdict of CPU time cannot.
    expect(tables).not.toContain('Verdicts weigh CPU time');
    // A latency run's warm-up second is said apart: it is no fault of the run (no note), and its figures are not in the p99.
    expect(tables).not.toContain('warm-up second');
    const latency = { ...scenario('publish-latency-5000', { app: 20 }), warmup: { first_ms: 431.4, slowest_ms: 1062 } };
    const quiet = { ...ceiling('durable-minimum-publish-latency-5000', 5000, { app: 40 }), warmup: { first_ms: null, slowest_ms: null } };
    const withWarmup = formatTables({ ...report, baselines: [...BASELINES, quiet], scenarios: [latency] });
    expect(withWarmup).toContain('- publish-latency-5000: warm-up second (left out): its first event, sent as the process listened, arrived after 431 ms, its slowest after 1,062 ms');
    expect(withWarmup).toContain('- durable-minimum-publish-latency-5000: warm-up second (left out): none of its events arrived');
    const loaded = formatTables({ ...report, machine: { ...report.machine, load_average: { start: 14.2, end: 12 } } });
    expect(loaded).toContain('shared its 2 cores with other work (load average 14.2 at the start)');
  });
});
