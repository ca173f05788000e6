import type { BenchTenant } from './bench-tenant.ts';
import { readCommitted } from './kafka-reader.ts';
import type { Measured } from './result.ts';
import { eventsMeasured } from './stats.ts';

/**
 * N events ingested as NDJSON batches, timed from the first request until the last record is readable
 * by a read_committed consumer. Latencies are per record: its `ingested_at` header (when sluice
 * acknowledged it) to its arrival at the consumer.
 */
export async function runEndToEnd(opts: {
  url: string;
  brokers: string[];
  topic: string;
  tenant: BenchTenant;
  line: (key: string) => string;
  runId: string;
  events: number;
  batch: number;
  concurrency: number;
  timeoutMs: number;
}): Promise<Measured> {
  const latencies: number[] = [];
  const reader = await readCommitted(opts.brokers, opts.topic, (a) => {
    const ingestedAt = a.headers.get('ingested_at');
    if (ingestedAt !== undefined) latencies.push(a.arrivedAt - Date.parse(ingestedAt));
  });
  try {
    const started = Date.now();
    const deadline = started + opts.timeoutMs;
    const batches = Math.ceil(opts.events / opts.batch);
    let next = 0;
    let rejected = 0;
    const headers = {
      'Content-Type': 'application/x-ndjson',
      Authorization: `Bearer ${opts.tenant.token}`,
      'X-Tenant-Id': opts.tenant.id,
    };
    const sender = async (): Promise<void> => {
      for (let b = next++; b < batches && Date.now() < deadline; b = next++) {
        const size = Math.min(opts.batch, opts.events - b * opts.batch);
        const body = Array.from({ length: size }, (_, i) => opts.line(`${opts.runId}-${b}-${i}`)).join('\n');
        const res = await fetch(`${opts.url}/v1/events`, { method: 'POST', headers, body });
        await res.arrayBuffer();
        if (res.status !== 202) rejected += size;
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, sender));
    const complete = await reader.waitFor(opts.events - rejected, deadline);
    const elapsedS = (Date.now() - started) / 1000;
    return eventsMeasured(reader.distinct, reader.distinct / elapsedS, latencies, [
      rejected > 0 ? `${rejected} events rejected at ingest` : '',
      complete ? '' : `only ${reader.distinct} of ${opts.events} readable after ${opts.timeoutMs / 1000} s`,
      reader.duplicates > 0 ? `${reader.duplicates} duplicates read` : '',
    ]);
  } finally {
    await reader.close();
  }
}
