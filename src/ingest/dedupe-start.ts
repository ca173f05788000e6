import { BackgroundLoop } from '../core/background-loop.ts';
import { describeError } from '../errors.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Forwarder } from './forwarder.ts';
import { readKeySnapshot, removeKeySnapshot, writeKeySnapshot } from './key-snapshot.ts';
import type { RecentKeys } from './recent-keys.ts';

/**
 * Rebuilds the dedupe index at start: the snapshot the last run left (see KeySnapshots), then the
 * journal after it — the writes of the last snapshot interval at most, however long the backlog. With
 * no usable snapshot, or one older than the checkpoint, the journal is read from the last
 * `keepForwarded` records before the checkpoint (those retention left), so the recently forwarded
 * keys are held again too, not only the unforwarded ones.
 */
export async function loadDedupeIndex(opts: { journal: JournalWriter; forwarder: Forwarder; keys: RecentKeys; log: Logger }): Promise<void> {
  const { journal, forwarder, keys, log } = opts;
  const started = performance.now();
  const snap = await readKeySnapshot(journal.nodeDir, journal.nextSeq - 1);
  const forwarded = forwarder.checkpoint.seq;
  let afterSeq = 0;
  if (typeof snap === 'string') {
    if (snap === 'no snapshot') {
      log.info('no dedupe index snapshot; reading the journal instead', { from_seq: Math.max(0, forwarded - keys.keepForwarded) + 1 });
    } else {
      log.warn('dedupe index snapshot not used; removed, reading the journal instead', { reason: snap });
      await removeKeySnapshot(journal.nodeDir);
    }
  } else {
    keys.index.load(snap.lo, snap.hi, snap.seqs);
    keys.loaded(snap.through);
    afterSeq = snap.through;
  }
  // The snapshot may predate the checkpoint by more than the keep window: the window is read then.
  afterSeq = Math.max(afterSeq, forwarded - keys.keepForwarded, 0);
  let scanned = 0;
  // After a clean stop the snapshot covers the whole journal: not even its last segment is read.
  if (afterSeq < journal.nextSeq - 1) {
    await forwarder.scan((e) => {
      keys.journaled(e.tenant_id, e.dedupe_key, e.seq);
      scanned++;
    }, afterSeq);
  }
  // After the scan: what it read before the checkpoint is marked forwarded and ages out as usual.
  keys.forwarded(forwarded);
  const fromSnapshot = typeof snap === 'string' ? 0 : snap.seqs.length;
  if (fromSnapshot + scanned > 0) {
    log.info('dedupe index loaded', {
      from_snapshot: fromSnapshot,
      from_journal: scanned,
      keys: keys.index.size,
      index_bytes: keys.index.bytes,
      ms: Math.round(performance.now() - started),
    });
  }
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
