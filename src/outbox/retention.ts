import type { Sql } from './db.ts';

/**
 * Deletes up to `limit` sent rows older than `retentionMs`. Small batches keep each transaction short;
 * SKIP LOCKED lets several instances share the work without waiting on each other.
 */
export async function deleteSent(sql: Sql, retentionMs: number, limit: number): Promise<number> {
  const result = await sql`
    DELETE FROM outbox WHERE id IN (
      SELECT id FROM outbox
      WHERE status = 'sent' AND sent_at < now() - make_interval(secs => ${retentionMs} / 1000.0)
      ORDER BY sent_at
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )`;
  return result.count;
}
