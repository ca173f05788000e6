// Where the processor's regular poll starts looking (README.md, "Processor", "Waking").
import type { Entered } from '../outbox/claims.ts';

/** What one poll saw: the outbox's highest id, when it looked, and the oldest writer then running (Entered). */
export type PollMark = Pick<Entered, 'top' | 'at' | 'oldestWriter'>;

/**
 * How far back a poll looks at most: a row whose transaction runs longer than this after rows above
 * its id were polled is left to its task's 5-s pass. Without a bound, one long transaction would
 * widen every poll until it ended (its rows read each time, up to the cap).
 */
export const POLL_LOOKBACK_MS = 2_000;

/**
 * The polls to keep after `latest`, oldest first: the next poll reads the rows above the first one's
 * top. A row a poll N did not see, with an id at or below its top, belongs to a transaction that
 * began before N looked. Once such transactions have all ended before a later poll's snapshot, that
 * poll saw their rows, and the ones after it may start at N's top. Which have ended is known from the
 * writers a poll read, after its snapshot: so the poll before `latest` decides (its read came before
 * `latest`'s snapshot), for the newest N ahead of it whose successor began after every writer it saw
 * began. The poll two before `latest` is always kept; a writer still running keeps older ones, back to
 * `lookbackMs` before `latest`.
 */
export function pollWindow(marks: readonly PollMark[], latest: PollMark, lookbackMs: number = POLL_LOOKBACK_MS): PollMark[] {
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
  while (start < m - 2 && (all[start] as PollMark).at < oldest) start++;
  return all.slice(start);
}
