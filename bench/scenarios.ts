import type { WriteMode } from '../src/core/modes.ts';
import type { Measured } from './result.ts';

/** The durable minimum of a write mode (bench/baselines/durable-minimum.ts), publishing as `serve` does or not: the least work sluice's design does with a single JSON event. */
export type MinimumCeiling =
  | 'durable-minimum-json-fast_ack'
  | 'durable-minimum-json-sync'
  | 'durable-minimum-serve-json-fast_ack'
  | 'durable-minimum-serve-json-sync';

export type BaselineName = 'raw-bun-serve-json' | 'raw-bun-serve-ndjson-1000' | 'postgres-batched-insert' | 'kafka-producer-perf' | MinimumCeiling;

/** The rate a target asks for: a ratio to the scenario's ceiling measured in the same run, or events/s. */
export type RateAsked = { ratio: number } | { events_per_s: number };

export interface Target {
  text: string;
  met(r: Measured, ratio: number): boolean;
  /** Set on the targets that are a rate: the budget table (bench/budget.ts) works at that rate. */
  rate?: RateAsked;
}

/** At least `ratio` × the scenario's ceiling; `extra` a further condition with its text. */
function ratioTarget(ratio: number, extra?: { text: string; met: (r: Measured) => boolean }): Target {
  return {
    text: `>= ${ratio} x ceiling${extra === undefined ? '' : `, ${extra.text}`}`,
    met: (r, measured) => measured >= ratio && (extra?.met(r) ?? true),
    rate: { ratio },
  };
}

/**
 * `serve` is ingest and processor in one process; `ingest` leaves the processor out, to compare the
 * ingest path alone with raw Bun.serve. `embedded` runs without DATABASE_URL, on the embedded database
 * (the default a first `bun start` gets), to report its memory. `workers` is passed as WORKERS_SETTING.
 */
interface Common {
  name: string;
  command: 'serve' | 'ingest';
  database?: 'embedded';
  workers?: number;
  baseline: BaselineName;
  target?: Target;
}

export type Scenario = Common &
  (
    | { kind: 'http'; mode: WriteMode; lines: number; connections: number }
    | { kind: 'end-to-end'; guarantee: 'exactly_once' | 'at_least_once' }
    | { kind: 'publish-latency'; rate: number }
  );

/** How long each part runs: the full run for published figures, --quick for a smoke run. */
export interface Durations {
  warmupS: number;
  httpS: number;
  insertS: number;
  kafkaRecords: number;
  endToEndEvents: number;
  endToEndTimeoutMs: number;
  latencyS: number;
  /** The broker warm-up's least and most seconds (bench/broker-warmup.ts). */
  brokerWarmupMinS: number;
  brokerWarmupMaxS: number;
}

export const FULL: Durations = {
  warmupS: 3,
  httpS: 20,
  insertS: 15,
  kafkaRecords: 2_000_000,
  endToEndEvents: 200_000,
  endToEndTimeoutMs: 180_000,
  latencyS: 30,
  brokerWarmupMinS: 20,
  brokerWarmupMaxS: 120,
};

export const QUICK: Durations = {
  warmupS: 1,
  httpS: 5,
  insertS: 5,
  kafkaRecords: 300_000,
  endToEndEvents: 30_000,
  endToEndTimeoutMs: 45_000,
  latencyS: 8,
  brokerWarmupMinS: 6,
  brokerWarmupMaxS: 30,
};

export const SINGLE_CONNECTIONS = 64;
export const BATCH_LINES = 1000;
export const BATCH_CONNECTIONS = 8;
export const PUBLISH_RATE = 5000;

/**
 * The setting that runs sluice's ingest in N worker processes sharing the port (README.md, "Workers"):
 * it adds the scaling scenarios (ingest-only fast_ack, 1 and 2 workers) and the scaling table.
 */
export const WORKERS_SETTING: string | undefined = 'SLUICE_WORKERS';
export const SCALING_WORKERS = [1, 2];

function eventsTarget(perS: number): Target {
  return { text: `>= ${perS.toLocaleString('en-US')} events/s`, met: (r) => r.throughput >= perS, rate: { events_per_s: perS } };
}

const jsonFastAckIngest = ratioTarget(0.5, { text: 'p99 <= 10 ms', met: (r) => r.p99_ms <= 10 });

/** The 1-vs-N scenarios: none while there is no setting to pass the worker count in. */
export function scalingScenarios(setting: string | undefined): Scenario[] {
  if (setting === undefined) return [];
  return SCALING_WORKERS.flatMap((workers): Scenario[] => [
    { kind: 'http', command: 'ingest', workers, name: `ingest-json-fast_ack-workers-${workers}`, mode: 'fast_ack', lines: 1, connections: SINGLE_CONNECTIONS, baseline: 'raw-bun-serve-json' },
    { kind: 'http', command: 'ingest', workers, name: `ingest-ndjson-1000-fast_ack-workers-${workers}`, mode: 'fast_ack', lines: BATCH_LINES, connections: BATCH_CONNECTIONS, baseline: 'raw-bun-serve-ndjson-1000' },
  ]);
}

// Targets from issue 11's table: ratios to ceilings measured in the same run.
export const SCENARIOS: Scenario[] = [
  {
    kind: 'http',
    command: 'ingest',
    name: 'ingest-json-fast_ack',
    mode: 'fast_ack',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'raw-bun-serve-json',
    target: jsonFastAckIngest,
  },
  { kind: 'http', command: 'ingest', name: 'ingest-json-sync', mode: 'sync', lines: 1, connections: SINGLE_CONNECTIONS, baseline: 'postgres-batched-insert' },
  {
    kind: 'http',
    command: 'ingest',
    name: 'ingest-ndjson-1000-fast_ack',
    mode: 'fast_ack',
    lines: BATCH_LINES,
    connections: BATCH_CONNECTIONS,
    baseline: 'raw-bun-serve-ndjson-1000',
  },
  {
    kind: 'http',
    command: 'serve',
    name: 'json-sync',
    mode: 'sync',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'postgres-batched-insert',
    target: ratioTarget(0.2),
  },
  {
    kind: 'http',
    command: 'serve',
    name: 'json-fast_ack',
    mode: 'fast_ack',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'raw-bun-serve-json',
    target: ratioTarget(0.35),
  },
  { kind: 'http', command: 'serve', name: 'json-background', mode: 'background', lines: 1, connections: SINGLE_CONNECTIONS, baseline: 'raw-bun-serve-json' },
  {
    kind: 'http',
    command: 'serve',
    name: 'ndjson-1000-fast_ack',
    mode: 'fast_ack',
    lines: BATCH_LINES,
    connections: BATCH_CONNECTIONS,
    baseline: 'raw-bun-serve-ndjson-1000',
    target: eventsTarget(150_000),
  },
  { kind: 'http', command: 'serve', name: 'ndjson-1000-sync', mode: 'sync', lines: BATCH_LINES, connections: BATCH_CONNECTIONS, baseline: 'postgres-batched-insert' },
  {
    kind: 'end-to-end',
    command: 'serve',
    name: 'end-to-end-exactly_once',
    guarantee: 'exactly_once',
    baseline: 'postgres-batched-insert',
    target: ratioTarget(0.5),
  },
  { kind: 'end-to-end', command: 'serve', name: 'end-to-end-at_least_once', guarantee: 'at_least_once', baseline: 'postgres-batched-insert' },
  {
    kind: 'publish-latency',
    command: 'serve',
    name: `publish-latency-${PUBLISH_RATE}`,
    rate: PUBLISH_RATE,
    baseline: 'kafka-producer-perf',
    target: { text: 'p99 <= 50 ms', met: (r) => r.p99_ms <= 50 },
  },
  {
    kind: 'http',
    command: 'serve',
    database: 'embedded',
    name: 'embedded-json-fast_ack',
    mode: 'fast_ack',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'raw-bun-serve-json',
  },
  ...scalingScenarios(WORKERS_SETTING),
];
