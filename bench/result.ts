export type Unit = 'req/s' | 'events/s';

/** What one measurement yields; latencies in milliseconds. */
export interface Measured {
  unit: Unit;
  throughput: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Anything that qualifies the figures (errors, records missing at the deadline). */
  note?: string;
}

export interface BaselineResult extends Measured {
  name: string;
  description: string;
}

export interface ScenarioResult extends Measured {
  name: string;
  peak_rss_mib: number;
  /** Name of the ceiling this scenario is compared with. */
  baseline: string;
  /** throughput / the baseline's throughput, both from this run. */
  ratio: number;
  target: string | null;
  target_met: boolean | null;
  rss_target_met: boolean;
}

export interface BenchReport {
  date: string;
  command: string;
  quick: boolean;
  machine: { cores: number; bun: string; platform: string; busy_note: string };
  baselines: BaselineResult[];
  scenarios: ScenarioResult[];
}

export const RSS_LIMIT_MIB = 256;
