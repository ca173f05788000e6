import type { Budget } from './budget.ts';
import type { CpuFigures } from './cpu-meter.ts';
import type { StageProfile } from './profile.ts';

export type Unit = 'req/s' | 'events/s';

/** What one measurement yields; latencies in milliseconds. */
export interface Measured {
  unit: Unit;
  throughput: number;
  /** Events the throughput counts (requests × events per request, records read, rows inserted). */
  events: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** CPU per event of each process group over the measured interval; absent where /proc cannot be read. */
  cpu?: CpuFigures;
  /** Anything that qualifies the figures (errors, records missing at the deadline): a run with one is not clean. */
  note?: string;
  /** Publish latency: the warm-up second its latencies leave out (bench/publish-latency.ts). */
  warmup?: WarmupArrivals;
}

/** The events of a latency run's warm-up second; null where none arrived. */
export interface WarmupArrivals {
  /** The latency of the load's first event, sent as soon as the process under test said it listened. */
  first_ms: number | null;
  slowest_ms: number | null;
}

export interface BaselineResult extends Measured {
  name: string;
  description: string;
}

export interface ScenarioResult extends Measured {
  name: string;
  command: 'serve' | 'ingest';
  database: 'postgres' | 'embedded';
  /** The ingest workers asked for (bench/scenarios.ts, WORKERS_SETTING); null: sluice's default. */
  workers: number | null;
  /** The largest of `peak_rss_per_process_mib`: the figure held to RSS_LIMIT_MIB. */
  peak_rss_mib: number;
  /** VmHWM of each sluice process (the one started and any it started), at the end of the scenario. */
  peak_rss_per_process_mib: number[];
  /** Name of the ceiling this scenario is compared with. */
  baseline: string;
  /** throughput / the baseline's throughput, both from this run. */
  ratio: number;
  target: string | null;
  target_met: boolean | null;
  rss_target_met: boolean;
  /** `--profile`: sluice's CPU samples over the scenario, by source directory. */
  profile?: StageProfile;
  /** For a target that is a rate: the cores its unavoidable work needs at that rate and sluice's share of the rest (bench/budget.ts). */
  budget?: Budget;
}

/** 1 against N ingest workers, from the scaling scenarios of the same run. */
export interface ScalingRow {
  scenario: string;
  workers: number[];
  throughput: number[];
  /** Cores the sluice processes kept busy at each worker count; null without /proc. */
  sluice_cores: (number | null)[];
  /** Cores the whole machine kept busy at each (/proc/stat); null without it, absent from results written before it was measured. */
  machine_cores?: (number | null)[];
  /** Throughput at the most workers / at one worker. */
  speedup: number;
}

export interface Scaling {
  /** The environment variable that sets the workers; null while sluice has none. */
  setting: string | null;
  rows: ScalingRow[];
  note: string;
}

export interface BenchReport {
  date: string;
  command: string;
  quick: boolean;
  machine: {
    cores: number;
    bun: string;
    platform: string;
    /** os.loadavg()[0] when the run started and when it ended: how busy the machine was. */
    load_average: { start: number; end: number };
    busy_note: string;
  };
  baselines: BaselineResult[];
  /** The broker's transaction code compiled before the scenarios (bench/broker-warmup.ts); absent when no scenario publishes. */
  broker_warmup?: { seconds: number; transactions: number; compiler_cores: number };
  scenarios: ScenarioResult[];
  scaling?: Scaling;
}

export const RSS_LIMIT_MIB = 256;
