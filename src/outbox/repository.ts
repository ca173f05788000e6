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
 * The journal text a batch of rows gathered for one insert may hold (the forwarder's and replay's),
 * beside their row count (SLUICE_FORWARD_BATCH): 1,000 lines of 1-MB events made a 1-GB batch, and an
 * outside test's `ingest` reached 955 MiB with four connections of such events.
 */
export const INSERT_BATCH_MAX_CHARS = 8 * 1024 * 1024;

/**
 * Inserts rows with one statement: one array parameter per column, unnested in input order. A
 * (tenant_id, dedupe_key) that already exists — in the table or earlier in the same batch — is a
 * duplicate and answers with the id of the first row.
 *
 * The statement returns the new ids only, in numeric order, as the text of one array: one value
 * for the driver to read rather than a row per id. Ids come from the identity sequence as the rows
 * are inserted, in input order (ORDER BY n), so when every row was inserted the k-th smallest id is
 * the k-th row's. Only a batch with duplicates looks its keys up again.
 */
export async function insertRows(sql: Sql, rows: NewOutboxRow[]): Promise<InsertResult[]> {
  if (rows.length === 0) return [];
  const [inserted] = await sql<{ ids: string | null }[]>`
    WITH inserted AS (
      INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, request_id, traceparent, ingested_at)
      SELECT t, k, p, tp, pl, h::jsonb, r, tr, ia::timestamptz
      FROM unnest(
        ${textArray(rows.map((r) => r.tenant_id))}::text[],
        ${textArray(rows.map((r) => r.dedupe_key))}::text[],
        ${`{${rows.map((r) => r.partition).join(',')}}`}::int[],
        ${textArray(rows.map((r) => r.topic))}::text[],
        ${textArray(rows.map((r) => r.payload))}::text[],
        ${textArray(rows.map((r) => JSON.stringify(r.headers)))}::text[],
        ${textArray(rows.map((r) => r.request_id))}::text[],
        ${textArray(rows.map((r) => r.traceparent ?? null))}::text[],
        ${textArray(rows.map((r) => r.ingested_at))}::text[]
      ) WITH ORDINALITY AS u(t, k, p, tp, pl, h, r, tr, ia, n)
      ORDER BY n
      ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
      RETURNING id
    )
    SELECT array_agg(id ORDER BY id)::text AS ids FROM inserted`;
  // `{1,2,3}`, or null when every row was a duplicate.
  const text = inserted?.ids ?? null;
  const ids = text === null ? [] : text.slice(1, -1).split(',');
  if (ids.length === rows.length) return ids.map((id) => ({ id, duplicate: false }));
  return withDuplicates(sql, rows, new Set(ids));
}

/** A batch some of whose rows were not inserted: every row's id looked up by its key. */
async function withDuplicates(sql: Sql, rows: NewOutboxRow[], fresh: Set<string>): Promise<InsertResult[]> {
  const existing = await sql<{ id: string; tenant_id: string; dedupe_key: string }[]>`
    SELECT o.id::text, o.tenant_id, o.dedupe_key
    FROM outbox o
    JOIN unnest(
      ${textArray(rows.map((r) => r.tenant_id))}::text[],
      ${textArray(rows.map((r) => r.dedupe_key))}::text[]
    ) AS u(t, k) ON o.tenant_id = u.t AND o.dedupe_key = u.k`;
  const ids = new Map<string, string>();
  for (const r of existing) ids.set(pairKey(r.tenant_id, r.dedupe_key), r.id);
  return rows.map((r) => {
    const key = pairKey(r.tenant_id, r.dedupe_key);
    const id = ids.get(key);
    if (id === undefined) throw new SluiceError('internal', `outbox row for ${key} vanished during insert`);
    // The first occurrence in this batch is the one that was inserted; later ones are duplicates.
    return { id, duplicate: !fresh.delete(id) };
  });
}

/** Which of these (tenant_id, dedupe_key) pairs the outbox already holds, as `tenant\0key` strings. */
export async function existingPairs(sql: Sql, pairs: { tenant_id: string; dedupe_key: string }[]): Promise<Set<string>> {
  if (pairs.length === 0) return new Set();
  const rows = await sql<{ tenant_id: string; dedupe_key: string }[]>`
    SELECT o.tenant_id, o.dedupe_key
    FROM outbox o
    JOIN unnest(
      ${textArray(pairs.map((r) => r.tenant_id))}::text[],
      ${textArray(pairs.map((r) => r.dedupe_key))}::text[]
    ) AS u(t, k) ON o.tenant_id = u.t AND o.dedupe_key = u.k`;
  return new Set(rows.map((r) => pairKey(r.tenant_id, r.dedupe_key)));
}

/** False on a database that was never migrated (a dry-run replay into a rebuilt one must not create it). */
export async function outboxExists(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ there: boolean }[]>`SELECT to_regclass('outbox') IS NOT NULL AS there`;
  return row?.there === true;
}

/** Text that JSON.stringify escapes otherwise than an array literal would: control characters and (lone) surrogates. */
const NOT_LITERAL_SAFE = /[\u0000-\u001f\ud800-\udfff]/;

/**
 * A text[] literal, `{"a","b\\"c",null}`. JSON.stringify quotes a string exactly as an array element
 * is quoted (`"` and `\\` escaped with a backslash) as long as it has no control character or
 * surrogate, which it would escape as `\\n` or `\\uXXXX`: a column without those is one native
 * call; the others take a plain escape. postgres.js's own array serializer runs two regular
 * expressions over each element: measured 4 times slower on payload-sized text.
 */
export function textArray(values: readonly (string | null)[]): string {
  if (!values.some((v) => v !== null && NOT_LITERAL_SAFE.test(v))) return `{${JSON.stringify(values).slice(1, -1)}}`;
  return `{${values.map((v) => (v === null ? 'NULL' : `"${v.replace(/["\\]/g, '\\$&')}"`)).join(',')}}`;
}
