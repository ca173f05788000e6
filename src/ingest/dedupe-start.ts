import { BackgroundLoop } from '../background-loop.ts';
import { describeError, SluiceError } from '../errors.ts';
import type { Checkpoint } from '../journal/checkpoint.ts';
import { readEntriesAfter } from '../journal/reader.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import { type KeySnapshot, readKeySnapshot, removeKeySnapshot, writeKeySnapshot } from './key-snapshot.ts';
import { keptEntries, type RecentKeys } from './recent-keys.ts';

/**
 * Rebuilds the dedupe index at start: the snapshot the last run left (see KeySnapshots), then the
 * journal after it — the writes of the last snapshot interval at most, read in the background. With
 * no usable snapshot (the first start after an upgrade, a damaged file) the journal is read from the
 * last `keepForwarded` records before the checkpoint (those retention left), so the recently forwarded
 * keys are held again too, not only the unforwarded ones; that read follows the backlog, so it runs in
 * the background while sluice serves (see RecentKeys.building) and stops with `signal`.
 */
export async function loadDedupeIndex(opts: {
  journal: JournalWriter;
  /** The forwarder's checkpoint now: where the journal after it starts, and what is forwarded. */
  checkpoint: () => Checkpoint;
  keys: RecentKeys;
  log: Logger;
  signal: AbortSignal;
}): Promise<void> {
  const { journal, checkpoint, keys, log } = opts;
  const started = performance.now();
  const snap = await readKeySnapshot(journal.nodeDir, journal.nextSeq - 1);
  const forwarded = checkpoint().seq;
  const fromSeq = Math.max(0, forwarded - keys.keepForwarded);
  if (typeof snap === 'string') {
    if (snap === 'no snapshot') {
      log.info('no dedupe index snapshot; reading the journal in the background', { from_seq: fromSeq + 1 });
    } else {
      log.warn('dedupe index snapshot not used; removed, reading the journal in the background instead', { reason: snap });
      await removeKeySnapshot(journal.nodeDir);
    }
    if (fromSeq < journal.nextSeq - 1) keys.rebuilding(rebuild({ ...opts, fromSeq, started, fromSnapshot: 0 }));
    else keys.forwarded(forwarded);
    return;
  }
  const kept = keptOfSnapshot(snap, forwarded, keys.keepForwarded);
  keys.index.load(kept.lo, kept.hi, kept.seqs);
  keys.loaded(snap.through);
  // The snapshot may predate the checkpoint by more than the keep window: the window is read then.
  const afterSeq = Math.max(snap.through, fromSeq);
  // After a clean stop the snapshot covers the whole journal: not even its last segment is read.
  // After a kill -9 the journal after it (up to a snapshot interval of writes, however fast they
  // came) is read in the background, as without a snapshot: sluice serves meanwhile.
  if (afterSeq < journal.nextSeq - 1) {
    keys.rebuilding(rebuild({ ...opts, fromSeq: afterSeq, started, fromSnapshot: kept.seqs.length }));
    return;
  }
  keys.forwarded(forwarded);
  logLoaded(log, { from_snapshot: kept.seqs.length, from_journal: 0, keys, started });
}

type SnapshotEntries = Pick<KeySnapshot, 'lo' | 'hi' | 'seqs'>;

/**
 * The snapshot's entries the index keeps once told what is forwarded (RecentKeys' rule, keptEntries:
 * the forwarded ones past it go, oldest first). Loading only these sizes the
 * index's arrays for them: a snapshot written under a larger SLUICE_RECENT_KEYS (4 million keys) would
 * otherwise leave arrays for all it held (96 MiB) after the eviction (an outside tester's finding).
 */
export function keptOfSnapshot(snap: KeySnapshot, forwarded: number, keepForwarded: number): SnapshotEntries {
  const n = snap.seqs.length;
  const limit = keptEntries(snap.through, forwarded, keepForwarded);
  if (n <= limit) return snap;
  // Seqs ascend: the forwarded entries are a prefix, [0, lo) once the search ends.
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((snap.seqs[mid] ?? 0) <= forwarded) lo = mid + 1;
    else hi = mid;
  }
  const cut = Math.min(n - limit, lo);
  return { lo: snap.lo.subarray(cut), hi: snap.hi.subarray(cut), seqs: snap.seqs.subarray(cut) };
}

const REBUILD_RETRY_MS = 1_000;

/**
 * Reads the journal after `fromSeq` into the index. No fresh key is journaled meanwhile (its write
 * waits for this), so seqs still reach the index in order. A failed read (a segment retention removed
 * under it, say) is retried from the last seq read.
 */
async function rebuild(o: {
  journal: JournalWriter;
  checkpoint: () => Checkpoint;
  keys: RecentKeys;
  log: Logger;
  signal: AbortSignal;
  fromSeq: number;
  started: number;
  fromSnapshot: number;
}): Promise<void> {
  const { journal, checkpoint, keys, log, signal } = o;
  let scanned = 0;
  const stopped = (): SluiceError => new SluiceError('shutting_down', 'sluice is stopping');
  for (;;) {
    try {
      await readEntriesAfter(journal, checkpoint(), Math.max(o.fromSeq, keys.through), (e) => {
        if (signal.aborted) throw stopped();
        keys.journaled(e.tenant_id, e.dedupe_key, e.seq);
        scanned++;
      });
      keys.forwarded(checkpoint().seq);
      logLoaded(log, { from_snapshot: o.fromSnapshot, from_journal: scanned, keys, started: o.started });
      return;
    } catch (err) {
      if (signal.aborted) throw stopped();
      log.warn('dedupe index rebuild failed; retrying', { error: describeError(err), through: keys.through });
      await Bun.sleep(REBUILD_RETRY_MS);
    }
  }
}

function logLoaded(log: Logger, o: { from_snapshot: number; from_journal: number; keys: RecentKeys; started: number }): void {
  if (o.from_snapshot + o.from_journal === 0) return;
  log.info('dedupe index loaded', {
    from_snapshot: o.from_snapshot,
    from_journal: o.from_journal,
    keys: o.keys.index.size,
    index_bytes: o.keys.index.bytes,
    ms: Math.round(performance.now() - o.started),
  });
}

/**
 * Writes the dedupe index's snapshot every `intervalMs` when new keys were journaled since the last
 * one, and once more at close, so a restart reads at most one interval of journal.
 */
export class KeySnapshots {
  #o: { nodeDir: string; keys: RecentKeys; intervalMs: number; log: Logger };
  #loop: BackgroundLoop;
  #writing: Promise<void> | undefined;
  #savedThrough = -1;
  #failing = false;

  constructor(opts: { nodeDir: string; keys: RecentKeys; intervalMs: number; log: Logger }) {
    this.#o = opts;
    this.#loop = new BackgroundLoop({ name: 'dedupe index snapshots', log: opts.log, intervalMs: opts.intervalMs, idleFirst: true, pass: () => this.save() });
  }

  start(): void {
    this.#loop.start();
  }

  /** Stops the loop and writes a last snapshot. Safe to call twice. */
  async stop(): Promise<void> {
    await this.#loop.stop();
    await this.#writing;
    await this.save();
  }

  save(): Promise<void> {
    const through = this.#o.keys.through;
    // Mid-rebuild the index is whole only up to `through`, but retries and eviction during it are
    // simpler to trust once it is done: the first snapshot waits for the rebuild.
    if (this.#o.keys.building !== undefined) return Promise.resolve();
    if (this.#writing !== undefined || through === this.#savedThrough) return this.#writing ?? Promise.resolve();
    this.#writing = writeKeySnapshot(this.#o.nodeDir, this.#o.keys.index, through)
      .then(
        () => {
          this.#savedThrough = through;
          this.#failing = false;
        },
        (err: unknown) => {
          // A missing snapshot costs a longer start, nothing else: report once, keep serving.
          if (!this.#failing) this.#o.log.warn('dedupe index snapshot not written', { error: describeError(err) });
          this.#failing = true;
        },
      )
      .finally(() => {
        this.#writing = undefined;
      });
    return this.#writing;
  }
}
