import { systemClock, type Clock } from '../core/clock.ts';
import { describeError } from '../errors.ts';
import type { JournalEntry } from '../core/record.ts';
import type { Logger } from '../log.ts';
import type { InsertResult, Outbox } from '../outbox/outbox.ts';

/**
 * The outbox stage of a sync write: one multi-row INSERT for a group commit's journaled entries, by
 * `deadline` (on `clock`). Undefined when it failed or took longer: the writes are then answered from
 * the journal and the forwarder inserts them once the outbox answers.
 */
export async function insertWithin(opts: {
  outbox: Outbox;
  entries: JournalEntry[];
  deadline: number;
  /** The group commit's writes and SLUICE_SYNC_OUTBOX_WAIT_MS, for the log lines. */
  events: number;
  waitMs: number;
  log: Logger;
  clock?: Clock;
}): Promise<Map<number, InsertResult> | undefined> {
  const { outbox, entries, events, log } = opts;
  const clock = opts.clock ?? systemClock;
  const left = opts.deadline - clock.now();
  if (left <= 0) {
    log.error('outbox wait spent in the queue behind a slow insert; writes acknowledged from the journal', { wait_ms: opts.waitMs, events });
    return undefined;
  }
  const insert = outbox.insert(entries.map((e) => outbox.rowFor(e)));
  const timer = new AbortController();
  const late = clock.sleep(left, timer.signal).then(() => 'late' as const);
  try {
    const inserted = await Promise.race([insert, late]);
    if (inserted === 'late') {
      // It may still commit: the forwarder's insert of the same lines then finds the rows there.
      insert.catch(() => {});
      log.error('outbox insert too slow; writes acknowledged from the journal', { wait_ms: opts.waitMs, events });
      return undefined;
    }
    const bySeq = new Map<number, InsertResult>();
    entries.forEach((e, i) => {
      const r = inserted[i];
      if (r !== undefined) bySeq.set(e.seq, r);
    });
    return bySeq;
  } catch (err) {
    log.error('outbox insert failed; writes acknowledged from the journal', { error: describeError(err), events });
    return undefined;
  } finally {
    timer.abort();
  }
}
