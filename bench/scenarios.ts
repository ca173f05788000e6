import type { WriteMode } from '../src/core/modes.ts';
import type { Measured } from './result.ts';

export type BaselineName = 'raw-bun-serve-json' | 'raw-bun-serve-ndjson-1000' | 'postgres-batched-insert' | 'kafka-producer-perf';

export interface Target {
  text: string;
  met(r: Measured, ratio: number): boolean;
}

interface Common {
  name: string;
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
}

export const FULL: Durations = {
  warmupS: 3,
  httpS: 20,
  insertS: 15,
  kafkaRecords: 2_000_000,
  endToEndEvents: 200_000,
  endToEndTimeoutMs: 180_000,
  latencyS: 30,
};

export const QUICK: Durations = {
  warmupS: 1,
  httpS: 5,
  insertS: 5,
  kafkaRecords: 300_000,
  endToEndEvents: 30_000,
  endToEndTimeoutMs: 45_000,
  latencyS: 8,
};

export const SINGLE_CONNECTIONS = 64;
export const BATCH_LINES = 1000;
export const BATCH_CONNECTIONS = 8;
export const PUBLISH_RATE = 5000;

export const SCENARIOS: Scenario[] = [
  {
    kind: 'http',
    name: 'json-sync',
    mode: 'sync',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'postgres-batched-insert',
    target: { text: '>= 0.6 x ceiling', met: (_r, ratio) => ratio >= 0.6 },
  },
  {
    kind: 'http',
    name: 'json-fast_ack',
    mode: 'fast_ack',
    lines: 1,
    connections: SINGLE_CONNECTIONS,
    baseline: 'raw-bun-serve-json',
    target: { text: '>= 0.7 x ceiling, p99 <= 5 ms', met: (r, ratio) => ratio >= 0.7 && r.p99_ms <= 5 },
  },
  { kind: 'http', name: 'json-background', mode: 'background', lines: 1, connections: SINGLE_CONNECTIONS, baseline: 'raw-bun-serve-json' },
  {
    kind: 'http',
    name: 'ndjson-1000-fast_ack',
    mode: 'fast_ack',
    lines: BATCH_LINES,
    connections: BATCH_CONNECTIONS,
    baseline: 'raw-bun-serve-ndjson-1000',
    target: { text: '>= 150,000 events/s', met: (r) => r.throughput >= 150_000 },
  },
  { kind: 'http', name: 'ndjson-1000-sync', mode: 'sync', lines: BATCH_LINES, connections: BATCH_CONNECTIONS, baseline: 'postgres-batched-insert' },
  {
    kind: 'end-to-end',
    name: 'end-to-end-exactly_once',
    guarantee: 'exactly_once',
    baseline: 'postgres-batched-insert',
    target: { text: '>= 0.8 x ceiling', met: (_r, ratio) => ratio >= 0.8 },
  },
  { kind: 'end-to-end', name: 'end-to-end-at_least_once', guarantee: 'at_least_once', baseline: 'postgres-batched-insert' },
  {
    kind: 'publish-latency',
    name: `publish-latency-${PUBLISH_RATE}`,
    rate: PUBLISH_RATE,
    baseline: 'kafka-producer-perf',
    target: { text: 'p99 <= 100 ms', met: (r) => r.p99_ms <= 100 },
  },
];
