import type { Sql } from './db.ts';

export interface OutboxTenantStats {
  pending: number;
  dead: number;
  /** Seconds since the oldest pending row was created; 0 when none waits. */
  oldestPendingSeconds: number;
}

/**
 * Per-tenant gauges for /metrics: pending and dead counts and the age of the oldest pending row.
 * One query per status, each answered from its partial index (outbox_pending, outbox_dead), so the
 * cost follows the rows waiting or dead, never the sent rows kept for the dedupe window: a single
 * `status IN ('pending', 'dead')` matches neither index and reads the whole table. The oldest pending
 * row is the tenant's lowest pending id (ids grow with insertion), looked up by primary key.
 */
export async function outboxStats(sql: Sql): Promise<Map<string, OutboxTenantStats>> {
  const [pending, dead] = await Promise.all([
    sql<{ tenant_id: string; pending: number; oldest: number }[]>`
      WITH p AS (SELECT tenant_id, count(*)::int AS pending, min(id) AS first FROM outbox WHERE status = 'pending' GROUP BY tenant_id)
      -- A correlated subquery is one primary-key probe per tenant; a join may be planned as a hash
      -- join over the whole table.
      SELECT p.tenant_id, p.pending,
             greatest(0, coalesce(extract(epoch FROM now() - (SELECT o.created_at FROM outbox o WHERE o.id = p.first)), 0))::float8 AS oldest
      FROM p`,
    sql<{ tenant_id: string; dead: number }[]>`
      SELECT tenant_id, count(*)::int AS dead FROM outbox WHERE status = 'dead' GROUP BY tenant_id`,
  ]);
  const stats = new Map<string, OutboxTenantStats>();
  for (const r of pending) stats.set(r.tenant_id, { pending: r.pending, dead: 0, oldestPendingSeconds: r.oldest });
  for (const r of dead) {
    const s = stats.get(r.tenant_id);
    if (s === undefined) stats.set(r.tenant_id, { pending: 0, dead: r.dead, oldestPendingSeconds: 0 });
    else s.dead = r.dead;
  }
  return stats;
}

/** Pending rows per tenant, for ingest's backpressure (SLUICE_MAX_PENDING), from the pending index. */
export async function pendingByTenant(sql: Sql): Promise<Map<string, number>> {
  const rows = await sql<{ tenant_id: string; n: number }[]>`
    SELECT tenant_id, count(*)::int AS n FROM outbox WHERE status = 'pending' GROUP BY tenant_id`;
  return new Map(rows.map((r) => [r.tenant_id, r.n]));
}

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
