// Where the processor's regular poll starts looking (README.md, "Processor", "Waking").
import type { Entered } from '../outbox/outbox.ts';

/** What one poll saw: the outbox's highest id, when it looked, and the oldest writer then running (Entered). */
export type PollMark = Pick<Entered, 'top' | 'at' | 'oldestWriter'>;

/**
 * The bound before a processor's first poll: every pending row, a look at each partition (and so on,
 * until the writers running at the first poll have ended: a row its snapshot could not see may have
 * an id below every top it saw; outside tester, a partition just taken in a rebalance).
 */
export const BEFORE_FIRST_POLL: PollMark = { top: '', at: Number.NEGATIVE_INFINITY, oldestWriter: null };

/**
 * How far back a poll looks at most, from the first poll that saw ids above a row's: a row whose
 * transaction runs on longer than this (or while more than half a poll's ids enter) is left to its task's
 * 5-s pass. Without a bound one long transaction would widen every poll until it ended, and past the
 * poll's cap every poll would wake every task.
 */
export const POLL_LOOKBACK_MS = 2_000;

/**
 * The polls to keep after `latest`, oldest first: the next poll reads the ids above the first one's
 * top. A row a poll N did not see, with an id at or below its top, belongs to a transaction that was
 * running when N took its snapshot (its xid comes with its first id: the outbox's `xid` default is
 * evaluated with the id's nextval; and the id sequence caches no values, so ids are taken in order),
 * and so began before the next poll's `at`. Once such transactions have all ended before a later
 * poll's snapshot, that poll saw their rows, and the ones after it may start at N's top. Which have
 * ended is known from the writers a poll read, after its own snapshot: so the poll before `latest`
 * decides (its read came before `latest`'s snapshot), for the newest N ahead of it whose successor
 * began after every writer it saw began. The poll two before `latest` is always kept. A writer still
 * running keeps older ones, back to `lookbackMs` from the poll after the oldest kept (the first to see
 * ids above the rows in question), and while the ids from the oldest kept to `latest` are at most half
 * of `maxIds`, the ids one poll reads.
 */
export function pollWindow(marks: readonly PollMark[], latest: PollMark, lookbackMs: number, maxIds: number): PollMark[] {
  const all = [...marks, latest];
  const m = all.length - 1;
  const deciding = all[m - 1];
  let start = 0;
  if (deciding !== undefined) {
    for (let n = m - 2; n >= 0; n--) {
      const next = all[n + 1] as PollMark;
      if (deciding.oldestWriter === null || deciding.oldestWriter > next.at) {
        start = n;
        break;
      }
    }
  }
  const oldest = latest.at - lookbackMs;
  const top = BigInt(latest.top);
  // Half the ids a poll reads: the other half is for the rows that enter until the next poll.
  const past = (n: number): boolean => {
    const mark = all[n] as PollMark;
    // A look at everything reads no range of ids: only time lets it go.
    const span = mark === BEFORE_FIRST_POLL ? 0n : top - BigInt(mark.top);
    return (all[n + 1] as PollMark).at < oldest || span > BigInt(maxIds / 2);
  };
  while (start < m - 2 && past(start)) start++;
  return all.slice(start);
}
