import type { Measured } from './result.ts';

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentiles of latencies in milliseconds. */
export function summarize(latenciesMs: number[]): LatencySummary {
  if (latenciesMs.length === 0) return { p50Ms: Number.NaN, p99Ms: Number.NaN, maxMs: Number.NaN };
  const sorted = Float64Array.from(latenciesMs).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted[sorted.length - 1] ?? Number.NaN };
}

/** An events/s measurement of `events` from per-event latencies; empty notes are dropped. */
export function eventsMeasured(events: number, throughput: number, latenciesMs: number[], notes: string[]): Measured {
  const s = summarize(latenciesMs);
  const note = notes.filter((n) => n.length > 0).join('; ');
  return { unit: 'events/s', throughput, events, p50_ms: s.p50Ms, p99_ms: s.p99Ms, max_ms: s.maxMs, ...(note.length > 0 ? { note } : {}) };
}
