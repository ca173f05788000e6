import { systemClock, type Clock } from '../core/clock.ts';
import { describeError } from '../errors.ts';
import type { JournalEntry } from '../core/record.ts';
import type { Fields } from '../log.ts';
import type { InsertResult, Outbox } from '../outbox/outbox.ts';

/** Why a group commit's writes were answered from the journal: a log line's message and fields. */
export interface InsertMissed {
  msg: string;
  fields: Fields;
}

/**
 * The outbox stage of a sync write: one multi-row INSERT for a group commit's journaled entries, by
 * `deadline` (on `clock`). When it failed or took longer, why: the writes are then answered from the
 * journal and the forwarder inserts them once the outbox answers.
 */
export async function insertWithin(opts: {
  outbox: Outbox;
  entries: JournalEntry[];
  deadline: number;
  /** SLUICE_SYNC_OUTBOX_WAIT_MS, for the log line. */
  waitMs: number;
  clock?: Clock;
}): Promise<Map<number, InsertResult> | InsertMissed> {
  const { outbox, entries } = opts;
  const clock = opts.clock ?? systemClock;
  const left = opts.deadline - clock.now();
  if (left <= 0) {
    return { msg: 'outbox wait spent in the queue behind a slow insert; writes acknowledged from the journal', fields: { wait_ms: opts.waitMs } };
  }
  const insert = outbox.insert(entries.map((e) => outbox.rowFor(e)));
  const timer = new AbortController();
  const late = clock.sleep(left, timer.signal).then(() => 'late' as const);
  try {
    const inserted = await Promise.race([insert, late]);
    if (inserted === 'late') {
      // It may still commit: the forwarder's insert of the same lines then finds the rows there.
      insert.catch(() => {});
      return { msg: 'outbox insert too slow; writes acknowledged from the journal', fields: { wait_ms: opts.waitMs } };
    }
    const bySeq = new Map<number, InsertResult>();
    entries.forEach((e, i) => {
      const r = inserted[i];
      if (r !== undefined) bySeq.set(e.seq, r);
    });
    return bySeq;
  } catch (err) {
    return { msg: 'outbox insert failed; writes acknowledged from the journal', fields: { error: describeError(err) } };
  } finally {
    timer.abort();
  }
}
