import { describeError } from '../errors.ts';
import type { JournalEntry } from '../core/record.ts';
import { backoffMs } from '../core/backoff.ts';
import { readCheckpoint, writeCheckpoint, type Checkpoint } from '../journal/checkpoint.ts';
import { durableLines, isZlibError, nextSegment, parseOwnEntry, reportDamaged, SegmentListing, segmentAt, type BadLine } from '../journal/reader.ts';
import type { SegmentFile } from '../journal/segments.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { INSERT_BATCH_MAX_CHARS } from '../outbox/repository.ts';
import { segmentFileName } from '../journal/segment-name.ts';
import { BackgroundLoop } from '../background-loop.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { follow } from '../core/watermark.ts';
import type { OutboxProgress } from './outbox-progress.ts';
import { HandoffQueue } from './handoff-queue.ts';

/** What the forwarder asks of the node's journal writer, the owner of its segments. */
export type ForwarderJournal = Pick<JournalWriter, 'nodeDir' | 'active' | 'sealedBelow' | 'integrity' | 'durable' | 'handOff'>;

const MAX_BACKOFF_MS = 5_000;

/**
 * How often at most the checkpoint file is replaced while forwarding goes on (and at stop, and on an
 * idle pass once this long has gone by). One fsync'd replacement per commit cost more than the rest of
 * the forwarder at JSON rates (~124 entries a commit); written at most once a second it costs nothing
 * measurable. The file only ever lags what Postgres committed, never leads it: a crash forwards at most
 * this long's entries again, and the outbox counts them `already_in_outbox` or `duplicate`.
 */
export const CHECKPOINT_EVERY_MS = 1_000;

export interface ForwarderOptions {
  /** SLUICE_NODE_ID: the quarantine records which node's journal a refused line is in. */
  nodeId: string;
  journal: ForwarderJournal;
  outbox: Outbox;
  batchSize: number;
  pollMs: number;
  log: Logger;
  metrics: Metrics;
  /**
   * Which seqs are in the outbox: the forwarder skips those the sync path inserted, reads nothing it
   * is still inserting, and records its checkpoint here after each commit.
   */
  progress: OutboxProgress;
  /** The in-memory hand-off from the journal writer; by default one bounded by HANDOFF_MAX_ENTRIES and HANDOFF_MAX_BYTES. */
  handoff?: HandoffQueue;
  clock?: Clock;
  /** CHECKPOINT_EVERY_MS by default; 0 writes the file after every commit. */
  checkpointEveryMs?: number;
  /**
   * SLUICE_FORWARD_LINGER_MS (0 here by default): after a commit of fewer than `batchSize` entries,
   * the next waits until this long after it, unless a batch's worth is already waiting. Under a
   * steady stream of small group commits one INSERT (and one wake of the processor) then covers
   * several; a lone write, long after the last commit, is forwarded at once.
   */
  lingerMs?: number;
  /** The journal's segments as the forwarder last listed them; a test passes its own to count the listings. */
  listing?: SegmentListing;
}

/** Entries forwarded since start, by where they were read: the writer's hand-off in memory, or the files. */
export interface ForwardedFrom {
  memory: number;
  files: number;
}

/**
 * Ingest's journal → outbox stage. Forwards the journal from checkpoint.json into the outbox in
 * batches with ON CONFLICT DO NOTHING, and moves the checkpoint only after the commit.
 *
 * While the process lives, the journal writer hands each group commit's durable lines over in memory
 * (HandoffQueue), with their place in the segment: the forwarder takes those that follow its
 * checkpoint byte for byte and builds the same checkpoint a read of the file would. Everything else
 * is read from the files, as far as the journal's `durable` mark (across rotation and gzip): the
 * backlog after a restart, and whatever the bounded queue refused while the forwarder was behind.
 * The files are the truth; memory only spares reading back what was just written. A bad line read
 * from a file is reported with file and line and left there; it is never inserted.
 */
export class Forwarder {
  #opts: ForwarderOptions;
  #cp: Checkpoint = { segment: 0, offset: 0, line: 1, seq: 0 };
  /** Where the last commit left `#cp` (a move to the next segment alone is not written). */
  #committed: Checkpoint = this.#cp;
  /** What checkpoint.json holds: `#committed` or behind it. */
  #written: Checkpoint = this.#cp;
  /** When (clock ms) checkpoint.json was last replaced; -Infinity until then, so the first commit writes it. */
  #writtenAt = Number.NEGATIVE_INFINITY;
  #clock: Clock;
  #checkpointEveryMs: number;
  #loop: BackgroundLoop;
  #following = false;
  #handoff: HandoffQueue;
  #stopHandOff: (() => void) | undefined;
  #from: ForwardedFrom = { memory: 0, files: 0 };
  /** When (clock ms) the last commit of fewer than batchSize entries was made; -Infinity after a full one. */
  #smallCommitAt = Number.NEGATIVE_INFINITY;
  /** Ends the linger in progress: a batch's worth was handed over meanwhile. */
  #lingering: AbortController | undefined;
  /**
   * Kept from one segment to the next and listed again only when a segment is not in it (rotated
   * since) or is gone (gzipped or retired since): a catch-up over thousands of small segments listed
   * and stat'ed the whole directory twice a segment.
   */
  #listing: SegmentListing;

  constructor(opts: ForwarderOptions) {
    this.#opts = opts;
    this.#listing = opts.listing ?? new SegmentListing(opts.journal.nodeDir);
    this.#handoff = opts.handoff ?? new HandoffQueue();
    this.#clock = opts.clock ?? systemClock;
    this.#checkpointEveryMs = opts.checkpointEveryMs ?? CHECKPOINT_EVERY_MS;
    this.#loop = new BackgroundLoop({
      name: 'forwarder',
      log: opts.log,
      clock: this.#clock,
      intervalMs: opts.pollMs,
      pass: async () => {
        await this.#linger();
        // Stopping ended the linger: what it waited for is forwarded after the restart, as when idle.
        if (this.#loop.signal.aborted) return 'idle';
        if (await this.#step()) return 'more';
        // Idle: what the last commits passed goes to the file once it is due, without a new commit.
        await this.#writeCheckpoint(false);
        return 'idle';
      },
      failed: (err, failures) => {
        if (failures === 1) opts.log.warn('forwarding failed; will retry', { error: describeError(err) });
        return backoffMs(failures, 100, MAX_BACKOFF_MS);
      },
    });
  }

  /** Loads the checkpoint; call before start(). */
  async init(): Promise<void> {
    const cp = await readCheckpoint(this.#opts.journal.nodeDir);
    if (cp !== undefined) this.#cp = cp;
    this.#committed = this.#cp;
    this.#written = this.#cp;
    this.#opts.progress.forwardedThrough(this.#cp.seq);
  }

  /** Where forwarding stands: every seq through its `seq` is in the outbox. checkpoint.json may lag it. */
  get checkpoint(): Checkpoint {
    return { ...this.#cp };
  }

  /**
   * The seq checkpoint.json has passed: what a restart would not read again. Retention may delete
   * only segments this has passed, or a restart would look for its checkpoint's segment in vain.
   */
  get checkpointedThrough(): number {
    return this.#written.seq;
  }

  get lastError(): string | undefined {
    return this.#loop.lastError;
  }

  /** Where the entries forwarded since start were read from. */
  get forwardedFrom(): ForwardedFrom {
    return { ...this.#from };
  }

  /** Milliseconds the forwarder has failed without a break; 0 while it works. */
  failingMs(): number {
    return this.#loop.failingMs();
  }

  /** Forwards from the checkpoint on, and again each time the journal made more lines durable. */
  start(): void {
    if (this.#following) return;
    this.#following = true;
    this.#stopHandOff = this.#opts.journal.handOff(this.#handoff);
    this.#loop.start();
    follow(this.#opts.journal.durable, this.#loop.signal, () => {
      if (this.#lingering !== undefined && this.#handoff.waitingAfter(this.#cp.seq) >= this.#opts.batchSize) this.#lingering.abort();
      this.#loop.wake();
    });
    follow(this.#opts.progress.leftToForward, this.#loop.signal, () => this.#loop.wake());
  }

  wake(): void {
    this.#loop.wake();
  }

  /** Finishes the batch in flight, writes the checkpoint of what is committed, then stops. Safe to call twice. */
  async stop(): Promise<void> {
    await this.#loop.stop();
    this.#stopHandOff?.();
    try {
      await this.#writeCheckpoint(true);
    } catch (err) {
      this.#opts.log.warn('checkpoint not written at stop; the next start forwards again from the one before', { error: describeError(err) });
    }
  }

  /** Waits out the linger after a small commit, while less than a batch is waiting in memory. */
  async #linger(): Promise<void> {
    const { lingerMs = 0, batchSize } = this.#opts;
    const wait = this.#smallCommitAt + lingerMs - this.#clock.now();
    if (wait <= 0 || this.#handoff.waitingAfter(this.#cp.seq) >= batchSize) return;
    const lingering = new AbortController();
    this.#lingering = lingering;
    try {
      await this.#clock.sleep(wait, AbortSignal.any([lingering.signal, this.#loop.signal]));
    } finally {
      this.#lingering = undefined;
    }
  }

  /**
   * Forwards what the writer handed over in memory, or else what the current segment holds, or moves
   * on to the next segment. False when there was nothing to do.
   */
  async #step(): Promise<boolean> {
    const { batchSize, progress } = this.#opts;
    const taken = this.#handoff.take(this.#cp, batchSize, progress.settledThrough);
    // Never move past a line that is still being inserted by its own request.
    if (taken === 'held') return false;
    if (taken !== undefined && taken.entries.length > 0) {
      await this.#commit(taken.entries, taken.next);
      this.#from.memory += taken.entries.length;
      return true;
    }
    // Every durable line is passed: no file to look at.
    if (this.#handoff.caughtUp(this.#cp)) return false;
    try {
      return await this.#forwardSegment();
    } catch (err) {
      // Maintenance gzipped (or retention deleted) the segment since the listing: list again and read
      // the .gz, or go on with the next.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await this.#listing.list(true);
        return true;
      }
      throw err;
    }
  }

  async #forwardSegment(): Promise<boolean> {
    const seg = await segmentAt(this.#opts.journal, this.#cp, this.#listing);
    if (seg === undefined) return false;
    if (seg.firstSeq !== this.#cp.segment) this.#cp = { segment: seg.firstSeq, offset: 0, line: 1, seq: this.#cp.seq };
    // Asked before reading: a segment sealed by then is read to its true end below, so leaving it
    // afterwards skips nothing. One sealed only during the read is read again first.
    const sealed = seg.firstSeq < this.#opts.journal.sealedBelow;
    // Read no further than where the hand-off's entries begin: those are taken from memory next.
    const stopAt = this.#handoff.heldFrom(this.#cp);
    // Handed over since `take` found nothing (while the segments were listed): the next pass takes
    // them. Read, nothing would come before them, and a sealed segment would be left as if done.
    if (stopAt === this.#cp.offset) return true;
    const start = this.#cp;
    let entries: JournalEntry[] = [];
    let chars = 0;
    let next = start;
    let held = false;
    let damaged: string | undefined;
    // One pass over the segment, committing every batchSize entries: a gzipped segment is inflated once.
    try {
      for await (const l of durableLines(this.#opts.journal, seg, start, sealed, stopAt)) {
        const e = parseOwnEntry(l.text);
        if (typeof e !== 'string' && e.seq > this.#opts.progress.settledThrough) {
          held = true;
          break;
        }
        next = { segment: seg.firstSeq, offset: l.end, line: l.line + 1, seq: next.seq };
        if (typeof e === 'string') {
          this.#reportBad({ file: seg.path, line: l.line, reason: e });
        } else if (e.seq > next.seq) {
          if (next.seq > 0 && e.seq !== next.seq + 1) {
            this.#opts.journal.integrity.report({
              kind: 'gap',
              file: seg.path,
              line: l.line,
              message: `seq ${e.seq} follows ${next.seq}: ${e.seq - next.seq - 1} record(s) in no file`,
              after: next.seq,
              seq: e.seq,
            });
          }
          next.seq = e.seq;
          entries.push(e);
          chars += l.text.length;
        }
        if (entries.length >= this.#opts.batchSize || chars >= INSERT_BATCH_MAX_CHARS) {
          await this.#commitRead(entries, next);
          entries = [];
          chars = 0;
          if (this.#loop.signal.aborted) return true;
        }
      }
    } catch (err) {
      if (!(seg.gzipped && isZlibError(err))) throw err;
      damaged = (err as Error).message;
    }
    if (damaged !== undefined) return this.#leaveDamaged(seg, entries, next, damaged);
    if (next !== this.#cp) {
      await this.#commitRead(entries, next);
      return true;
    }
    if (next !== start) return true;
    // Never move past a line that is still being inserted by its own request.
    if (held) return false;
    if (!sealed) return seg.firstSeq < this.#opts.journal.sealedBelow;
    const following = await nextSegment(this.#listing, seg);
    if (following === undefined) return false;
    this.#cp = { segment: following.firstSeq, offset: 0, line: 1, seq: this.#cp.seq };
    return true;
  }

  /**
   * A gzipped segment that cannot be inflated to its end (truncated, corrupt): what was read is
   * forwarded, the rest of the file is reported lost, and forwarding goes on with the next segment.
   */
  async #leaveDamaged(seg: SegmentFile, entries: JournalEntry[], next: Checkpoint, reason: string): Promise<boolean> {
    if (next !== this.#cp) await this.#commitRead(entries, next);
    reportDamaged(this.#opts.journal.integrity, seg, this.#cp.seq, reason);
    const following = await nextSegment(this.#listing, seg);
    if (following === undefined) return false;
    this.#cp = { segment: following.firstSeq, offset: 0, line: 1, seq: this.#cp.seq };
    return true;
  }

  async #commitRead(entries: JournalEntry[], next: Checkpoint): Promise<void> {
    // Read from the files: a backlog is behind it (a restart, the queue's overflow), and a short
    // commit is only a segment's end: no linger (with segments of a few lines it held a catch-up at
    // one INSERT a linger).
    await this.#commit(entries, next, false);
    this.#from.files += entries.length;
  }

  async #commit(entries: JournalEntry[], next: Checkpoint, lingerAfter = true): Promise<void> {
    const { progress } = this.#opts;
    const toInsert = entries.filter((e) => !progress.insertedDirectly(e.seq));
    if (toInsert.length > 0) {
      // A line the outbox refuses for good is quarantined (position and error recorded, line left in
      // the journal) so that it cannot hold every later line back.
      const at = { nodeId: this.#opts.nodeId, segment: segmentFileName(next.segment) };
      const { results, quarantined } = await this.#opts.outbox.insertOrQuarantine(toInsert, at);
      for (const q of quarantined) {
        this.#opts.log.error('journal line refused by the outbox for good; quarantined', { ...at, seq: q.entry.seq, error: q.error });
      }
      this.#opts.metrics.forwarderQuarantined.inc(quarantined.length);
      const duplicates = results.filter((r) => r.duplicate).length;
      this.#opts.metrics.forwardedRecords.inc({ result: 'inserted' }, results.length - duplicates);
      this.#opts.metrics.forwardedRecords.inc({ result: 'duplicate' }, duplicates);
    }
    this.#opts.metrics.forwardedRecords.inc({ result: 'already_in_outbox' }, entries.length - toInsert.length);
    this.#cp = { ...next };
    this.#smallCommitAt = lingerAfter && entries.length < this.#opts.batchSize ? this.#clock.now() : Number.NEGATIVE_INFINITY;
    this.#committed = this.#cp;
    progress.forwardedThrough(next.seq);
    await this.#writeCheckpoint(false);
  }

  /**
   * Replaces checkpoint.json with where the last commit left forwarding, when that moved and (unless `now`) the last
   * replacement is checkpointEveryMs old. Only ever called after the commit of what it passes. A
   * failure fails the pass (lastError, backoff) but loses nothing: forwarding goes on, and the file
   * keeps the older checkpoint until a later write succeeds.
   */
  async #writeCheckpoint(now: boolean): Promise<void> {
    const cp = this.#committed;
    if (cp === this.#written) return;
    const at = this.#clock.now();
    if (!now && at - this.#writtenAt < this.#checkpointEveryMs) return;
    await writeCheckpoint(this.#opts.journal.nodeDir, cp);
    this.#written = cp;
    this.#writtenAt = at;
  }

  #reportBad(bad: BadLine): void {
    this.#opts.log.error('journal line is corrupt; left in place and not forwarded', { ...bad });
    this.#opts.metrics.journalBadLines.inc();
  }

}
