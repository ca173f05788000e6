import { pairKey, type Envelope, type NewOutboxRow } from '../core/record.ts';
import type { Sql } from './db.ts';
import { partitionOf } from './partition.ts';
import { SluiceError } from '../errors.ts';

/** The outbox row for a journaled write (`ts` is when it was acknowledged). */
export function rowFor(e: Envelope & { ts: string }, partitions: number): NewOutboxRow {
  return {
    tenant_id: e.tenant_id,
    dedupe_key: e.dedupe_key,
    partition: partitionOf(e.tenant_id, partitions),
    topic: e.topic,
    payload: e.payload,
    headers: e.headers,
    request_id: e.request_id,
    traceparent: e.traceparent,
    ingested_at: e.ts,
  };
}

export interface InsertResult {
  id: string;
  duplicate: boolean;
}

/**
 * Inserts rows with one multi-row statement. A (tenant_id, dedupe_key) that already exists — in the
 * table or earlier in the same batch — is a duplicate and answers with the id of the first row.
 */
export async function insertRows(sql: Sql, rows: NewOutboxRow[]): Promise<InsertResult[]> {
  if (rows.length === 0) return [];
  const inserted = await sql<{ id: string; tenant_id: string; dedupe_key: string }[]>`
    INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, request_id, traceparent, ingested_at)
    SELECT t, k, p, tp, pl, h::jsonb, r, tr, ia::timestamptz
    FROM unnest(
      ${sql.array(rows.map((r) => r.tenant_id))}::text[],
      ${sql.array(rows.map((r) => r.dedupe_key))}::text[],
      ${sql.array(rows.map((r) => r.partition))}::int[],
      ${sql.array(rows.map((r) => r.topic))}::text[],
      ${sql.array(rows.map((r) => r.payload))}::text[],
      ${sql.array(rows.map((r) => JSON.stringify(r.headers)))}::text[],
      ${sql.array(rows.map((r) => r.request_id))}::text[],
      ${sql.array(rows.map((r) => r.traceparent ?? null))}::text[],
      ${sql.array(rows.map((r) => r.ingested_at))}::text[]
    ) WITH ORDINALITY AS u(t, k, p, tp, pl, h, r, tr, ia, n)
    ORDER BY n
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING id::text, tenant_id, dedupe_key`;
  const ids = new Map<string, string>();
  for (const r of inserted) ids.set(pairKey(r.tenant_id, r.dedupe_key), r.id);
  const fresh = new Set(ids.keys());
  const missing = rows.filter((r) => !ids.has(pairKey(r.tenant_id, r.dedupe_key)));
  if (missing.length > 0) {
    const existing = await sql<{ id: string; tenant_id: string; dedupe_key: string }[]>`
      SELECT o.id::text, o.tenant_id, o.dedupe_key
      FROM outbox o
      JOIN unnest(
        ${sql.array(missing.map((r) => r.tenant_id))}::text[],
        ${sql.array(missing.map((r) => r.dedupe_key))}::text[]
      ) AS u(t, k) ON o.tenant_id = u.t AND o.dedupe_key = u.k`;
    for (const r of existing) ids.set(pairKey(r.tenant_id, r.dedupe_key), r.id);
  }
  return rows.map((r) => {
    const key = pairKey(r.tenant_id, r.dedupe_key);
    const id = ids.get(key);
    if (id === undefined) throw new SluiceError('internal', `outbox row for ${key} vanished during insert`);
    // The first occurrence in this batch is the one that was inserted; later ones are duplicates.
    const isNew = fresh.delete(key);
    return { id, duplicate: !isNew };
  });
}

/** Which of these (tenant_id, dedupe_key) pairs the outbox already holds, as `tenant\0key` strings. */
export async function existingPairs(sql: Sql, pairs: { tenant_id: string; dedupe_key: string }[]): Promise<Set<string>> {
  if (pairs.length === 0) return new Set();
  const rows = await sql<{ tenant_id: string; dedupe_key: string }[]>`
    SELECT o.tenant_id, o.dedupe_key
    FROM outbox o
    JOIN unnest(
      ${sql.array(pairs.map((r) => r.tenant_id))}::text[],
      ${sql.array(pairs.map((r) => r.dedupe_key))}::text[]
    ) AS u(t, k) ON o.tenant_id = u.t AND o.dedupe_key = u.k`;
  return new Set(rows.map((r) => pairKey(r.tenant_id, r.dedupe_key)));
}

/** False on a database that was never migrated (a dry-run replay into a rebuilt one must not create it). */
export async function outboxExists(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ there: boolean }[]>`SELECT to_regclass('outbox') IS NOT NULL AS there`;
  return row?.there === true;
}
