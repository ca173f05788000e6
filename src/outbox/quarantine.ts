import { describeError } from '../errors.ts';
import type { JournalEntry } from '../journal/entry.ts';
import type { Sql } from './db.ts';
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
 * Inserts journal entries into the outbox. When the outbox refuses the batch for good, the batch is
 * halved until the lines it refuses are found; each is recorded in `forwarder_quarantine` with its
 * position and error (and left in the journal), and everything else is inserted. Returns the
 * results of the inserted entries and the quarantined ones.
 */
export async function insertOrQuarantine(
  sql: Sql,
  entries: JournalEntry[],
  partitions: number,
  at: JournalPosition,
): Promise<{ results: InsertResult[]; quarantined: Quarantined[] }> {
  try {
    return { results: await insertRows(sql, entries.map((e) => rowFor(e, partitions))), quarantined: [] };
  } catch (err) {
    if (!refusedForGood(err)) throw err;
    if (entries.length === 1 && entries[0] !== undefined) {
      const poison = { entry: entries[0], error: describeError(err) };
      await quarantine(sql, poison, at);
      return { results: [], quarantined: [poison] };
    }
    const half = Math.ceil(entries.length / 2);
    const a = await insertOrQuarantine(sql, entries.slice(0, half), partitions, at);
    const b = await insertOrQuarantine(sql, entries.slice(half), partitions, at);
    return { results: [...a.results, ...b.results], quarantined: [...a.quarantined, ...b.quarantined] };
  }
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
