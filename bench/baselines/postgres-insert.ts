import { createLogger } from '../../src/log.ts';
import { openDatabase } from '../../src/outbox/db.ts';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import { partitionOf } from '../../src/outbox/partition.ts';
import { summarize, type LatencySummary } from '../stats.ts';

export interface InsertCeiling extends LatencySummary {
  eventsPerS: number;
  rows: number;
}

/**
 * The Postgres ceiling: the project's own multi-row `insertRows` (INSERT … SELECT unnest … ON CONFLICT
 * DO NOTHING) of rows shaped like the bench events, in batches, over a few connections at once, for a
 * fixed time. Latencies are per batch.
 */
export async function measureInsertCeiling(opts: {
  url: string;
  tenant: string;
  topic: string;
  payload: Record<string, unknown>;
  runId: string;
  connections: number;
  batch: number;
  durationS: number;
}): Promise<InsertCeiling> {
  // The same client settings as sluice's own pool.
  const db = await openDatabase({ url: opts.url, dataDir: '', pool: opts.connections }, createLogger({ level: 'warn' }));
  const { sql } = db;
  const latencies: number[] = [];
  let rows = 0;
  const partition = partitionOf(opts.tenant, 16);
  const rowsOf = (w: number, n: number): NewOutboxRow[] => {
    const ingestedAt = new Date().toISOString();
    return Array.from({ length: opts.batch }, (_, i) => ({
      tenant_id: opts.tenant,
      dedupe_key: `${opts.runId}-w${w}-${n}-${i}`,
      partition,
      topic: opts.topic,
      payload: JSON.stringify(opts.payload),
      headers: {},
      request_id: `${opts.runId}-w${w}-${n}`,
      traceparent: undefined,
      ingested_at: ingestedAt,
    }));
  };
  const worker = async (w: number, deadline: number): Promise<void> => {
    for (let n = 0; performance.now() < deadline; n++) {
      const batch = rowsOf(w, n);
      const started = performance.now();
      await insertRows(sql, batch);
      latencies.push(performance.now() - started);
      rows += batch.length;
    }
  };
  try {
    // postgres.js learns the array types with the first query it sends; a query built before that
    // sends its arrays as plain text and Postgres answers "malformed array literal".
    await sql`SELECT 1`;
    const started = performance.now();
    const deadline = started + opts.durationS * 1000;
    await Promise.all(Array.from({ length: opts.connections }, (_, w) => worker(w, deadline)));
    const elapsedS = (performance.now() - started) / 1000;
    return { eventsPerS: rows / elapsedS, rows, ...summarize(latencies) };
  } finally {
    await db.close();
  }
}
