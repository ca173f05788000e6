import type { Envelope } from '../../src/core/record.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';

/**
 * Appends `records` writes to a node's journal through the real writer (group commits of 5,000), so
 * segments, seqs and lines are exactly what `ingest` would have left: the backlog a node restarts with.
 */
export async function fillJournal(dir: string, nodeId: string, records: number, keyPrefix: string): Promise<void> {
  const journal = await JournalWriter.open({ dir, nodeId, segmentBytes: 64 * 1024 * 1024, log: createLogger({ level: 'warn' }), metrics: createMetrics() });
  try {
    const group = 5_000;
    for (let from = 0; from < records; from += group) {
      const batch: Envelope[] = [];
      for (let i = from; i < Math.min(records, from + group); i++) {
        batch.push({
          tenant_id: `g${i % 1000}`,
          dedupe_key: `${keyPrefix}-${i}`,
          topic: 'sluice.events',
          request_id: `r${i}`,
          headers: {},
          payload: '{"kind":"order.created","amount":4200,"currency":"EUR","customer":"c-1234567"}',
        });
      }
      await journal.append(batch);
    }
  } finally {
    await journal.close();
  }
}
