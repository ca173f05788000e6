import type { OutboxStatus } from '../core/modes.ts';
import type { Sql } from './db.ts';

/**
 * What re-queueing does to a row: pending again with a fresh start, `replays` bumped (the processor
 * marks such records `replay: true`), and the xid of this transaction, so the row obeys the same
 * "older than every running transaction" rule as a freshly inserted one.
 */
function requeued(sql: Sql) {
  return sql`
    status = 'pending', attempts = 0, last_error = NULL, available_at = now(), sent_at = NULL,
    replays = replays + 1, xid = pg_current_xact_id()`;
}

/** Re-queues the rows with these ids (any status) in one UPDATE; returns the tenant of each one found. */
export async function requeueIds(sql: Sql, ids: readonly string[]): Promise<{ id: string; tenant_id: string }[]> {
  if (ids.length === 0) return [];
  return sql<{ id: string; tenant_id: string }[]>`
    UPDATE outbox SET ${requeued(sql)}
    WHERE id = ANY(${sql.array([...ids])}::bigint[])
    RETURNING id::text, tenant_id`;
}

export interface TenantReplayFilter {
  tenantId: string;
  /** created_at from (inclusive). */
  since: string | undefined;
  /** created_at until (exclusive). */
  until: string | undefined;
  statuses: readonly OutboxStatus[];
  /** At most this many rows, oldest ids first. */
  limit: number;
  dryRun: boolean;
}

/**
 * Re-queues a tenant's rows that match the filter, oldest first and at most `limit`, in one
 * statement: `matched` counts every row the filter selects, also those past the limit (so a caller
 * sees that more remain), `requeued` those it changed (0 on a dry run).
 */
export async function requeueTenant(sql: Sql, f: TenantReplayFilter): Promise<{ matched: number; requeued: number }> {
  const [counts] = await sql<{ matched: number; requeued: number }[]>`
    WITH selected AS (
      SELECT id FROM outbox
      WHERE tenant_id = ${f.tenantId}
        AND status = ANY(${sql.array([...f.statuses])}::text[])
        AND created_at >= coalesce(${f.since ?? null}::timestamptz, '-infinity')
        AND created_at < coalesce(${f.until ?? null}::timestamptz, 'infinity')
    ), first AS (
      SELECT id FROM selected ORDER BY id LIMIT ${f.limit}
    ), changed AS (
      UPDATE outbox o SET ${requeued(sql)}
      FROM first m
      WHERE o.id = m.id AND NOT ${f.dryRun}::boolean
      RETURNING o.id
    )
    SELECT (SELECT count(*) FROM selected)::int AS matched, (SELECT count(*) FROM changed)::int AS requeued`;
  return counts ?? { matched: 0, requeued: 0 };
}

/** Whether the outbox holds any row of the tenant. */
export async function tenantHasRows(sql: Sql, tenantId: string): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`SELECT EXISTS (SELECT 1 FROM outbox WHERE tenant_id = ${tenantId}) AS found`;
  return row?.found === true;
}
