// The budget of a rate target (issue 11: "where a target proves impossible on this machine, show why
// with numbers"): at the rate the target asks for, the cores that the work no implementation of sluice
// can skip needs, and what is left per event for sluice. README.md, "Benchmarks", "Load and budget".
import type { BaselineResult, Measured, ScenarioResult } from './result.ts';
import type { MinimumCeiling, RateAsked, Scenario } from './scenarios.ts';

type HttpCeiling = 'raw-bun-serve-json' | 'raw-bun-serve-ndjson-1000';

/** What a scenario's events go through besides sluice, to know which floors apply. */
export interface BudgetPlan {
  rate: RateAsked;
  /** The raw Bun.serve ceiling sending the same requests: its own CPU per event is the floor for receiving and answering them. */
  http: HttpCeiling;
  /** Events are inserted into Postgres's outbox (not into the embedded database, whose work is sluice's own process). */
  outbox: boolean;
  /** Events are claimed, published to Kafka and marked sent (a `serve` node). */
  publishes: boolean;
  /**
   * The durable minimum of the scenario's write mode (bench/baselines/durable-minimum.ts): a part of
   * sluice's work in sluice's arrangement, so a rate it cannot reach sluice's pipeline cannot either.
   */
  minimum?: MinimumCeiling;
}

/** The floors of one event, in CPU µs; null where the event does not go that way. */
export interface BudgetFloors {
  /** The scenario's own load generator, measured in the scenario. */
  load: number;
  /** Raw Bun.serve's own process per event. */
  http: number;
  /** The Postgres ceiling's Postgres per row. */
  postgres_insert: number | null;
  /** The same again: the mark rewrites the row as the insert wrote it; the claim's read is taken as free. */
  postgres_claim_mark: number | null;
  /** The Kafka ceiling's broker per record. */
  broker: number | null;
}

export interface Budget {
  /** Events/s the target asks for. */
  target_rate: number;
  /** Where the rate comes from: the ratio and the ceiling measured in the same run, or the absolute rate. */
  rate_from: string;
  cores: number;
  /** Null (and the figures below with it) when a figure it needs was not measured; the verdict says which. */
  floor_us: BudgetFloors | null;
  unavoidable_us: number | null;
  /** target_rate × unavoidable_us: the cores the floors alone keep busy at that rate. */
  unavoidable_cores: number | null;
  /** (cores − unavoidable_cores) / target_rate, in µs an event: negative when there is none. */
  sluice_budget_us: number | null;
  /** sluice's processes per event, measured in the scenario. */
  sluice_us: number | null;
  /**
   * What the budget is held against: sluice's own µs minus the HTTP floor (raw Bun.serve's part of it,
   * already among the floors), plus what Postgres and the broker spent per event beyond their floors.
   */
  charged_us: number | null;
  /** The durable minimum's throughput in the same run, when the scenario has one and it was measured. */
  minimum_rate?: number;
  /**
   * The cores the whole machine kept busy while the minimum ran (/proc/stat): near `cores`, the minimum
   * ran out of CPU rather than waiting on something, so its rate is what this machine gives that work.
   */
  minimum_machine_busy_cores?: number;
  verdict: string;
}

/** The plan of a scenario whose target is a rate; undefined for the others (latency, no target). */
export function budgetPlan(s: Scenario): BudgetPlan | undefined {
  const rate = s.target?.rate;
  if (rate === undefined) return undefined;
  // End to end sends NDJSON batches; the HTTP scenarios their own shape; publish latency single events.
  const single = s.kind === 'publish-latency' || (s.kind === 'http' && s.lines === 1);
  const plan: BudgetPlan = { rate, http: single ? 'raw-bun-serve-json' : 'raw-bun-serve-ndjson-1000', outbox: s.database !== 'embedded', publishes: s.command === 'serve' };
  // Single JSON events on the Postgres outbox, answered once journaled (fast_ack) or inserted (sync).
  if (s.kind === 'http' && s.lines === 1 && plan.outbox && (s.mode === 'fast_ack' || s.mode === 'sync')) {
    plan.minimum = plan.publishes ? `durable-minimum-serve-json-${s.mode}` : `durable-minimum-json-${s.mode}`;
  }
  return plan;
}

/**
 * Out of reach only when the minimum missed the asked rate by more than the noise of single runs
 * minutes apart on a shared machine (the minimum, the ceiling and sluice are each measured once).
 */
export const MINIMUM_MARGIN = 0.95;

const PART_NAMES: Record<keyof BudgetFloors, string> = {
  load: 'load generator',
  http: 'HTTP',
  postgres_insert: 'Postgres insert',
  postgres_claim_mark: 'Postgres claim + mark',
  broker: 'broker',
};

/** The budget of `scenario` at its target's rate, from figures measured in the same run; `cores` the machine's. */
export function budgetOf(plan: BudgetPlan, scenario: ScenarioResult, baselines: BaselineResult[], cores: number): Budget {
  const ceiling = (name: string): BaselineResult | undefined => baselines.find((b) => b.name === name);
  const measuredCeiling = ceiling(scenario.baseline)?.throughput ?? Number.NaN;
  const asked = 'ratio' in plan.rate ? plan.rate.ratio * measuredCeiling : plan.rate.events_per_s;
  const rate_from =
    'ratio' in plan.rate ? `${plan.rate.ratio} x ${scenario.baseline} (${Math.round(measuredCeiling).toLocaleString('en-US')}/s)` : 'absolute';
  const missing: string[] = [];
  const figure = (value: number | null | undefined, what: string): number => {
    if (value === null || value === undefined || !Number.isFinite(value)) missing.push(what);
    return value ?? Number.NaN;
  };
  const insert = plan.outbox ? figure(ceiling('postgres-batched-insert')?.cpu?.us_per_event.postgres, 'the Postgres ceiling\'s Postgres µs') : null;
  const floors: BudgetFloors = {
    load: figure(scenario.cpu?.us_per_event.load, 'the scenario\'s load µs'),
    http: figure(ceiling(plan.http)?.cpu?.us_per_event.app, `${plan.http}'s µs`),
    postgres_insert: insert,
    postgres_claim_mark: plan.outbox && plan.publishes ? insert : null,
    broker: plan.publishes ? figure(ceiling('kafka-producer-perf')?.cpu?.us_per_event.kafka, 'the Kafka ceiling\'s broker µs') : null,
  };
  const sluice = figure(scenario.cpu?.us_per_event.app, 'sluice\'s µs');
  const postgres = plan.outbox ? figure(scenario.cpu?.us_per_event.postgres, 'the scenario\'s Postgres µs') : 0;
  const broker = plan.publishes ? figure(scenario.cpu?.us_per_event.kafka, 'the scenario\'s broker µs') : 0;
  figure(asked, `the ${scenario.baseline} ceiling`);
  if (missing.length > 0) {
    const verdict = `not computed: ${missing.join(', ')} not measured`;
    return { target_rate: asked, rate_from, cores, floor_us: null, unavoidable_us: null, unavoidable_cores: null, sluice_budget_us: null, sluice_us: null, charged_us: null, verdict };
  }

  const parts = Object.entries(floors).filter((e): e is [keyof BudgetFloors, number] => e[1] !== null);
  const unavoidable_us = parts.reduce((sum, [, us]) => sum + us, 0);
  const unavoidable_cores = (asked * unavoidable_us) / 1e6;
  const sluice_budget_us = (cores * 1e6) / asked - unavoidable_us;
  const beyond = (measured: number, floor: number | null): number => Math.max(0, measured - (floor ?? 0));
  const charged_us = sluice - floors.http + beyond(postgres, (floors.postgres_insert ?? 0) + (floors.postgres_claim_mark ?? 0)) + beyond(broker, floors.broker);
  const minimum = plan.minimum === undefined ? undefined : ceiling(plan.minimum);
  // A run with failures (its note) is no measure of what the arrangement can do.
  const minimum_rate = minimum !== undefined && minimum.note === undefined && Number.isFinite(minimum.throughput) ? minimum.throughput : undefined;
  const minimumBusy = minimum_rate === undefined ? undefined : minimum?.cpu?.machine?.busy_cores;
  // What a measurement bound by CPU alone kept busy in this run (the raw servers, the Postgres and Kafka
  // ceilings; not the minimums): a machine rarely shows every core busy, so this is the mark to read against.
  const ceilingsBusy = baselines.filter((b) => !b.name.startsWith('durable-minimum')).flatMap((b) => (b.cpu?.machine === undefined ? [] : [b.cpu.machine.busy_cores]));
  const busiest = ceilingsBusy.length === 0 ? undefined : Math.max(...ceilingsBusy);
  // By CPU time alone: sluice's share of the cores against what the floors leave it.
  const byCpu = charged_us <= sluice_budget_us ? 'within budget' : `over budget by ${(charged_us / sluice_budget_us).toFixed(1)}×`;
  let verdict: string;
  if (unavoidable_cores >= cores) {
    const [name, us] = parts.reduce((a, b) => (b[1] > a[1] ? b : a));
    verdict =
      `no budget left: the unavoidable work alone needs ${unavoidable_cores.toFixed(2)} cores of ${cores} ` +
      `(most: ${PART_NAMES[name]}, ${((asked * us) / 1e6).toFixed(2)})`;
  } else if (minimum_rate !== undefined && minimum_rate < MINIMUM_MARGIN * asked && minimum_rate > scenario.throughput) {
    // The CPU verdict too: a minimum that waited rather than ran out of CPU bounds this arrangement
    // only, and sluice's CPU an event against its budget says what another arrangement would still face.
    verdict =
      `out of reach here: ${plan.minimum}, sluice's arrangement doing only what the guarantee costs, reached ${Math.round(minimum_rate).toLocaleString('en-US')}/s ` +
      `(${(minimum_rate / asked).toFixed(2)} of the rate asked)` +
      (minimumBusy === undefined
        ? ''
        : `, the machine ${minimumBusy.toFixed(2)} cores busy meanwhile${busiest === undefined ? '' : ` (the busiest ceiling: ${busiest.toFixed(2)})`}`) +
      `; by CPU, sluice ${byCpu}`;
  } else {
    verdict = byCpu;
    // A minimum that did no better than sluice itself is no bound on what sluice's arrangement can do.
    if (minimum_rate !== undefined && minimum_rate <= scenario.throughput) verdict += ` (${plan.minimum} did no better than sluice: no bound)`;
  }
  return {
    target_rate: asked,
    rate_from,
    cores,
    floor_us: floors,
    unavoidable_us,
    unavoidable_cores,
    sluice_budget_us,
    sluice_us: sluice,
    charged_us,
    ...(minimum_rate === undefined ? {} : { minimum_rate }),
    ...(minimumBusy === undefined ? {} : { minimum_machine_busy_cores: minimumBusy }),
    verdict,
  };
}

/** The name of the durable minimum's run at a publish-latency scenario's rate (bench/run.ts). */
export function minimumLatencyName(rate: number): string {
  return `durable-minimum-publish-latency-${rate}`;
}

/**
 * For a latency target: what the durable minimum (publishing) measured at the same rate in the same run,
 * and whether it met the target itself — if not (and it did better than sluice), sluice's arrangement
 * doing only what the guarantee costs does not meet it on this machine either; if so, the gap is
 * sluice's. Undefined for other scenarios, or when it was not measured.
 */
export function minimumLatencyNote(s: Scenario, measured: Measured, baselines: BaselineResult[]): string | undefined {
  if (s.kind !== 'publish-latency' || s.target === undefined) return undefined;
  const name = minimumLatencyName(s.rate);
  const m = baselines.find((b) => b.name === name);
  if (m === undefined) return undefined;
  const figures = `${name}: p50 ${m.p50_ms.toFixed(1)} / p99 ${m.p99_ms.toFixed(1)} ms`;
  if (m.note !== undefined) return `${figures}, its run not clean (${m.note}): no bound`;
  if (s.target.met(m, Number.NaN)) return `${figures}, within the target: the gap is sluice's`;
  // A minimum slower than sluice itself is no bound on what sluice's arrangement can do.
  if (m.p99_ms >= measured.p99_ms) return `${figures}, no better than sluice: no bound`;
  return `out of reach here: ${figures}, sluice's arrangement doing only what the guarantee costs misses the target too`;
}
