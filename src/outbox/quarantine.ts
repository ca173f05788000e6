import { describeError } from '../errors.ts';
import type { JournalEntry } from '../core/record.ts';
import type { Sql } from './db.ts';
import type { NewOutboxRow } from '../core/record.ts';
import { insertRows, rowFor, type InsertResult } from './repository.ts';

/** Where a journal line sits: its node, its segment file, its seq. */
export interface JournalPosition {
  nodeId: string;
  segment: string;
}

export interface Quarantined {
  entry: JournalEntry;
  error: string;
}

/**
 * SQLSTATE classes of a statement that fails because of a value in it, the same every time: data
 * exceptions (22: bad encoding, untranslatable character, value too long), program limits (54: stack
 * depth, too many columns) and integrity violations (23) other than the unique one, which
 * ON CONFLICT already handles. Anything else (connection, resources, locks) may pass on retry.
 */
export function refusedForGood(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return false;
  return code.startsWith('22') || code.startsWith('54') || (code.startsWith('23') && code !== '23505');
}

/**
 * Inserts rows into the outbox. When the outbox refuses the batch for good, the batch is halved until
 * the rows it refuses are found; everything else is inserted. Returns the results of the inserted
 * rows and the refused ones by their index in `rows`, with the error.
 */
export async function insertIsolating(
  sql: Sql,
  rows: NewOutboxRow[],
  offset = 0,
): Promise<{ results: InsertResult[]; refused: { index: number; error: string }[] }> {
  try {
    return { results: await insertRows(sql, rows), refused: [] };
  } catch (err) {
    if (!refusedForGood(err)) throw err;
    if (rows.length === 1) return { results: [], refused: [{ index: offset, error: describeError(err) }] };
    const half = Math.ceil(rows.length / 2);
    const a = await insertIsolating(sql, rows.slice(0, half), offset);
    const b = await insertIsolating(sql, rows.slice(half), offset + half);
    return { results: [...a.results, ...b.results], refused: [...a.refused, ...b.refused] };
  }
}

/**
 * Inserts journal entries into the outbox; each line the outbox refuses for good is recorded in
 * `forwarder_quarantine` with its position and error (and left in the journal), and everything else
 * is inserted. Returns the results of the inserted entries and the quarantined ones.
 */
export async function insertOrQuarantine(
  sql: Sql,
  entries: JournalEntry[],
  partitions: number,
  at: JournalPosition,
): Promise<{ results: InsertResult[]; quarantined: Quarantined[] }> {
  const { results, refused } = await insertIsolating(sql, entries.map((e) => rowFor(e, partitions)));
  const quarantined: Quarantined[] = [];
  for (const { index, error } of refused) {
    const entry = entries[index];
    if (entry === undefined) continue;
    const poison = { entry, error };
    await quarantine(sql, poison, at);
    quarantined.push(poison);
  }
  return { results, quarantined };
}

async function quarantine(sql: Sql, q: Quarantined, at: JournalPosition): Promise<void> {
  // The ids are copied for the operator's convenience, made storable: the refused value may be one of them.
  const storable = (s: string): string => s.replaceAll('\u0000', '\\u0000').slice(0, 1024);
  await sql`
    INSERT INTO forwarder_quarantine (node_id, segment, seq, tenant_id, dedupe_key, error)
    VALUES (${at.nodeId}, ${at.segment}, ${q.entry.seq}, ${storable(String(q.entry.tenant_id))},
            ${storable(String(q.entry.dedupe_key))}, ${storable(q.error)})
    ON CONFLICT (node_id, seq) DO NOTHING`;
}
