import type { Sql } from './db.ts';

export interface StatusCounts {
  pending: number;
  sent: number;
  dead: number;
}

/** Rows per tenant and status, for the admin overview. */
export async function statusCountsByTenant(sql: Sql): Promise<Map<string, StatusCounts>> {
  const rows = await sql<({ tenant_id: string } & StatusCounts)[]>`
    SELECT tenant_id,
           count(*) FILTER (WHERE status = 'pending')::int AS pending,
           count(*) FILTER (WHERE status = 'sent')::int AS sent,
           count(*) FILTER (WHERE status = 'dead')::int AS dead
    FROM outbox
    GROUP BY tenant_id`;
  return new Map(rows.map(({ tenant_id, ...counts }) => [tenant_id, counts]));
}
