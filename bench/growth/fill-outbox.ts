import type { Sql } from '../../src/outbox/db.ts';
import { insertRows } from '../../src/outbox/repository.ts';

export interface OutboxShape {
  /** Rows to add, spread round-robin over `tenants` tenants named `g<i>`. */
  rows: number;
  tenants: number;
  /** This many of the added rows (the newest) stay pending; every 1009th of the rest is dead, the others sent. */
  pending: number;
  partitions: number;
}

/**
 * Grows the outbox fast with `INSERT … SELECT generate_series`, in chunks so no transaction holds
 * millions of rows. The payload and headers are copied from one row written by the real insert, so
 * the rows look like sluice's own whatever the column types are.
 */
export async function fillOutbox(sql: Sql, shape: OutboxShape, runId: string): Promise<void> {
  const [template] = await insertRows(sql, [
    {
      tenant_id: `template-${runId}`,
      dedupe_key: 'template',
      partition: 0,
      topic: 'sluice.events',
      payload: '{"kind":"order.created","amount":4200,"currency":"EUR","customer":"c-1234567"}',
      headers: {},
      request_id: 'growth',
      traceparent: undefined,
      ingested_at: new Date().toISOString(),
    },
  ]);
  if (template === undefined) throw new Error('template row not inserted');
  await sql`UPDATE outbox SET status = 'sent', sent_at = now() WHERE id = ${template.id}`;
  const chunk = 500_000;
  for (let from = 0; from < shape.rows; from += chunk) {
    const to = Math.min(shape.rows, from + chunk) - 1;
    const firstPending = shape.rows - shape.pending;
    await sql`
      INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, request_id, ingested_at, status, sent_at)
      SELECT 'g' || (g % ${shape.tenants}), ${runId} || '-' || g, (g % ${shape.tenants}) % ${shape.partitions}, t.topic, t.payload_text, t.headers,
             'growth', now(),
             CASE WHEN g >= ${firstPending} THEN 'pending' WHEN g % 1009 = 0 THEN 'dead' ELSE 'sent' END,
             CASE WHEN g >= ${firstPending} OR g % 1009 = 0 THEN NULL ELSE now() END
      FROM generate_series(${from}::bigint, ${to}::bigint) AS g, (SELECT topic, payload_text, headers FROM outbox WHERE id = ${template.id}) AS t`;
  }
  // A long-running table has statistics (autovacuum); a freshly filled one would mislead the planner.
  await sql`VACUUM ANALYZE outbox`;
}
