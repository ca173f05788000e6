import { outboxStats } from './claims.ts';
import type { Sql } from './db.ts';

export interface StatusCounts {
  pending: number;
  sent: number;
  dead: number;
}

/**
 * Rows per tenant and status, for the admin overview: pending and dead from their partial indexes (as
 * the gauges read them), sent from the counters the outbox's triggers keep (migration 0006), so the
 * sent rows themselves are never read.
 */
export async function statusCountsByTenant(sql: Sql): Promise<Map<string, StatusCounts>> {
  const [waiting, sent] = await Promise.all([
    outboxStats(sql),
    sql<{ tenant_id: string; sent: number }[]>`SELECT tenant_id, sent::int AS sent FROM outbox_sent_counts WHERE sent > 0`,
  ]);
  const counts = new Map<string, StatusCounts>();
  for (const [tenant, s] of waiting) counts.set(tenant, { pending: s.pending, sent: 0, dead: s.dead });
  for (const r of sent) {
    const c = counts.get(r.tenant_id);
    if (c === undefined) counts.set(r.tenant_id, { pending: 0, sent: r.sent, dead: 0 });
    else c.sent = r.sent;
  }
  return counts;
}
