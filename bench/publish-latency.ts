import { join } from 'node:path';
import type { BenchTenant } from './bench-tenant.ts';
import { childOutput } from './child.ts';
import { readCommitted } from './kafka-reader.ts';
import type { Measured, WarmupArrivals } from './result.ts';
import { eventsMeasured } from './stats.ts';

const LOAD = join(import.meta.dir, 'fixed-rate-load.ts');
const DRAIN_MS = 15_000;

/**
 * Ingest-to-Kafka latency at a fixed rate: a separate load process sends single events at `rate`
 * per second, each stamped with its send time; a read_committed consumer here takes its arrival time.
 * The first second (warm-up) is left out of the latencies and reported apart (`warmup`): how soon
 * after its start the process under test published.
 */
export async function runPublishLatency(opts: {
  url: string;
  brokers: string[];
  topic: string;
  tenant: BenchTenant;
  payload: Record<string, unknown>;
  runId: string;
  rate: number;
  seconds: number;
}): Promise<Measured> {
  const latencies: number[] = [];
  const warmup: WarmupArrivals = { first_ms: null, slowest_ms: null };
  let firstSentAt = Number.POSITIVE_INFINITY;
  const reader = await readCommitted(opts.brokers, opts.topic, (a) => {
    const sent = JSON.parse(a.value) as { sent_at?: number; warmup?: boolean };
    if (sent.sent_at === undefined) return;
    const latency = a.arrivedAt - sent.sent_at;
    if (sent.warmup === false) {
      latencies.push(latency);
      return;
    }
    warmup.slowest_ms = Math.max(warmup.slowest_ms ?? 0, latency);
    if (sent.sent_at < firstSentAt) {
      firstSentAt = sent.sent_at;
      warmup.first_ms = latency;
    }
  });
  try {
    const out = await childOutput(['bun', LOAD, opts.url, String(opts.rate), String(opts.seconds), opts.runId], {
      ...process.env,
      BENCH_TOKEN: opts.tenant.token,
      BENCH_TENANT: opts.tenant.id,
      BENCH_PAYLOAD: JSON.stringify(opts.payload),
    });
    const load = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ok: number; failed: number; missed: number; rate: number };
    const complete = await reader.waitFor(load.ok, Date.now() + DRAIN_MS);
    const measured = eventsMeasured(load.ok, load.rate, latencies, [
      load.failed > 0 ? `${load.failed} requests failed` : '',
      load.missed > 0 ? `${load.missed} sends missed (sluice fell behind)` : '',
      complete ? '' : `only ${reader.distinct} of ${load.ok} readable ${DRAIN_MS / 1000} s after the load ended`,
    ]);
    return { ...measured, warmup };
  } finally {
    await reader.close();
  }
}
