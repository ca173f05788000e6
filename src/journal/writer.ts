import { constants, mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Envelope } from '../core/record.ts';
import { CHECKPOINT_FILE, readCheckpoint, type Checkpoint } from './checkpoint.ts';
import type { JournalEntry } from '../core/record.ts';
import { LineBuffer } from './entry.ts';
import { JournalIntegrity } from './integrity.ts';
import { lastSeqOf, recoverTail } from './recover.ts';
import { listSegments, tidySegments, type SegmentFile } from './segments.ts';
import { parseSegmentFileName, segmentFileName } from './segment-name.ts';
import { removeSpares, SpareSegment } from './spare-segment.ts';
import { Watermark } from '../core/watermark.ts';
import { writeAll } from '../write-all.ts';

export interface JournalWriterOptions {
  dir: string;
  nodeId: string;
  segmentBytes: number;
  /**
   * Segments are files of `segmentBytes` zeros, prepared ahead, that writes overwrite (see
   * SpareSegment); the written part ends at the first NUL byte and a sealed segment is cut to it.
   * Default true; false grows each segment as it is written.
   */
  preallocate?: boolean;
  log: Logger;
  metrics: Metrics;
}

/** The segment being appended to and how many of its bytes are fsynced. */
export interface ActiveSegment {
  firstSeq: number;
  durableBytes: number;
}

/**
 * Lines the writer has just made durable, all in one segment: what it hands the outbox stage in
 * memory, so that stage need not read them back from the file (see DurableSink).
 */
export interface DurableBatch {
  /** The segment (its first seq) the lines were appended to. */
  segment: number;
  /** Byte offset of the first line in the segment. */
  start: number;
  entries: readonly JournalEntry[];
  /** Byte offset just past each entry's line, in the segment. */
  ends: readonly number[];
  /**
   * Set when the lines open a segment right after one this writer sealed: where that one ended.
   * Bytes follow bytes across the rotation, so a reader there is right before these lines.
   */
  after?: { segment: number; offset: number };
}

/** Takes each durable batch, in order, as the writer makes it durable. Must not throw or block. */
export interface DurableSink {
  push(batch: DurableBatch): void;
}

/**
 * One append waiting for its group commit, told the outcome: its entries once fsynced, or why they
 * were not. A caller that already holds an object per request makes it the waiter (appendFor), so
 * an append costs no promise of its own. Neither call may throw.
 */
export interface AppendWaiter {
  readonly inputs: Envelope[];
  journaled(entries: JournalEntry[]): void;
  failed(err: unknown): void;
}

/**
 * Appends entries to `<dir>/<node>/<first seq>.jsonl`. Appends that arrive while a write+fdatasync is
 * in flight are group-committed by the next one; every promise resolves only after its fsync.
 *
 * The writer is the one owner of the segments' life: a segment is active while the writer may still
 * append to it and sealed from the moment its handle is closed, for good (`sealedBelow`). Maintenance
 * (gzip, retention) and readers act on sealed segments only and ask the writer, never the directory,
 * which those are.
 */
export class JournalWriter {
  readonly nodeDir: string;
  /** Where this node's journal incidents are counted; maintenance and the forwarder report here too. */
  readonly integrity: JournalIntegrity;
  /** The last fsynced seq, moved after each group commit: the forwarder reads no further. */
  readonly durable: Watermark;
  /** `sealedBelow`, moved when rotation seals a segment: it may now be compressed. */
  readonly sealed: Watermark;
  #opts: JournalWriterOptions;
  #handle: FileHandle | undefined;
  #segmentFirstSeq = 0;
  #segmentOpenedAt = 0;
  #segmentSize = 0;
  /** A rotation by age asked for and not done yet: settled once the segment is sealed (or failed to be). */
  #rotateRequested: PromiseWithResolvers<void> | undefined;
  #nextSeq: number;
  #queue: AppendWaiter[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  #failure: string | undefined;
  /** The last seq of each segment this writer sealed: what its gzipped copy must end with. */
  #sealedLast = new Map<number, number>();
  /** Where the segment this writer last sealed ended ({0, 0} for a journal that had none): see DurableBatch.after. */
  #lastSealedEnd: { segment: number; offset: number } | undefined;
  #sink: DurableSink | undefined;
  /** Each group commit's lines: kept, so a commit does not allocate its bytes afresh. */
  #lines = new LineBuffer();
  #spare: SpareSegment | undefined;
  /** The active segment's file is longer than what was written to it: zeros follow, cut off at sealing. */
  #preallocated = false;

  private constructor(opts: JournalWriterOptions, nodeDir: string, nextSeq: number, integrity: JournalIntegrity) {
    this.#opts = opts;
    this.integrity = integrity;
    this.nodeDir = nodeDir;
    this.#nextSeq = nextSeq;
    this.durable = new Watermark(nextSeq - 1);
    this.sealed = new Watermark(nextSeq);
  }

  static async open(opts: JournalWriterOptions): Promise<JournalWriter> {
    const nodeDir = join(opts.dir, opts.nodeId);
    mkdirSync(nodeDir, { recursive: true });
    const integrity = new JournalIntegrity(opts.log, opts.metrics);
    await removeSpares(nodeDir);
    const tidied = await tidySegments(nodeDir);
    if (tidied.removedPlain.length + tidied.removedTemp.length > 0) {
      opts.log.warn('journal tidied after an interrupted compression', { dir: nodeDir, ...tidied });
    }
    const segments = await listSegments(nodeDir);
    const newest = segments.at(-1);
    let lastSeq = 0;
    if (newest !== undefined) {
      const recovered = await recoverTail(newest.path, newest.gzipped);
      if (recovered.truncatedBytes > 0) {
        opts.log.warn('journal torn tail truncated', { file: newest.path, bytes: recovered.truncatedBytes });
        opts.metrics.journalTornTails.inc();
      }
      lastSeq = recovered.lastSeq ?? newest.firstSeq - 1;
      if (recovered.unreadable !== undefined) {
        integrity.report({
          kind: 'unreadable_segment',
          file: newest.path,
          message: `the newest segment is damaged after seq ${lastSeq} (${recovered.unreadable}); what it held after that is lost`,
          after: lastSeq,
        });
        // Its seqs past the damage are unknown: new ones start above its first, so names stay in order.
        lastSeq = Math.max(lastSeq, newest.firstSeq);
      }
    }
    const recovered = await listSegments(nodeDir);
    await checkSealedTails(recovered, integrity);
    // A seq is never given out twice: not even when the files lost records the forwarder had passed.
    const cp = await readCheckpoint(nodeDir);
    // No segment at all is no loss: retention deletes forwarded segments only, oldest first, so a
    // journal whose every record was forwarded and retired ends where the checkpoint says.
    const ahead = cp !== undefined && cp.seq > lastSeq && newest !== undefined;
    if (ahead) {
      integrity.report({
        kind: 'checkpoint_ahead',
        file: join(nodeDir, CHECKPOINT_FILE),
        message: `the checkpoint passed seq ${cp.seq} but the journal ends at seq ${lastSeq}: records ${lastSeq + 1}..${cp.seq} are in no file; new records start at ${cp.seq + 1}`,
        after: lastSeq,
        seq: cp.seq + 1,
      });
    } else if (cp !== undefined) {
      await checkCheckpointSegment(cp, recovered, integrity, nodeDir);
    }
    const writer = new JournalWriter(opts, nodeDir, Math.max(lastSeq, cp?.seq ?? 0) + 1, integrity);
    if (opts.preallocate !== false) {
      writer.#spare = new SpareSegment(nodeDir, opts.segmentBytes, opts.log);
      writer.#spare.prepare();
    }
    // An empty journal: its first segment follows nothing, which is where a checkpoint that never moved stands.
    if (newest === undefined) writer.#lastSealedEnd = { segment: 0, offset: 0 };
    // After a jump the old newest segment is sealed: the new seqs start a segment of their own.
    if (newest !== undefined && !newest.gzipped && !ahead) await writer.#openSegment(newest.file, false);
    return writer;
  }

  /** Seq the next appended entry will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /**
   * Every segment whose first seq is below this is sealed: closed, complete, never written again. It
   * only grows, so a caller that read it once may act on those segments while the writer rotates on.
   */
  get sealedBelow(): number {
    return this.#handle === undefined ? this.#nextSeq : this.#segmentFirstSeq;
  }

  /** The last seq of a segment this writer sealed, if it sealed it (undefined for older ones). */
  sealedLastSeq(firstSeq: number): number | undefined {
    return this.#sealedLast.get(firstSeq);
  }

  /** The open segment, if any: a new one is created by the next append after rotation. */
  get active(): ActiveSegment | undefined {
    return this.#handle === undefined ? undefined : { firstSeq: this.#segmentFirstSeq, durableBytes: this.#segmentSize };
  }

  /**
   * Closes the active segment if it is non-empty and older than `maxAgeMs` (rotation by age); resolves
   * once it is sealed, so the caller's pass sees it sealed (sealing trims and syncs the file: under
   * load that outlasted a maintenance pass that did not wait, which then left it for the next).
   */
  rotateIfOlderThan(maxAgeMs: number, now = Date.now()): Promise<void> {
    if (this.#closed || this.#handle === undefined || this.#segmentSize === 0) return Promise.resolve();
    if (now - this.#segmentOpenedAt < maxAgeMs) return Promise.resolve();
    const rotation = (this.#rotateRequested ??= Promise.withResolvers<void>());
    // Taken up at once when no flush runs (#flush reads it before its first await).
    this.#flushing ??= this.#flush();
    return rotation.promise;
  }

  /**
   * From now on each group commit's lines are handed to `sink` once fsynced, before `durable` moves;
   * lines written before (or while no sink is set) are not. Returns the way to stop, which does
   * nothing once another sink has taken over.
   */
  handOff(sink: DurableSink): () => void {
    this.#sink = sink;
    return () => {
      if (this.#sink === sink) this.#sink = undefined;
    };
  }

  /** Undefined while the journal accepts writes; otherwise why it does not. */
  get failure(): string | undefined {
    return this.#failure;
  }

  append(inputs: Envelope[]): Promise<JournalEntry[]> {
    return new Promise((journaled, failed) => this.appendFor({ inputs, journaled, failed }));
  }

  /** `append` with the outcome told to `waiter` rather than a promise; a closed journal tells it at once. */
  appendFor(waiter: AppendWaiter): void {
    if (this.#closed) {
      waiter.failed(new SluiceError('shutting_down', 'journal is closed'));
      return;
    }
    this.#queue.push(waiter);
    // Started a microtask later, not at once: the requests of one event-loop turn reach here each from
    // its own continuation of the same awaited turn, and now share one group commit. Started at once,
    // the first went alone and the rest waited a whole commit behind it (44 % of the commits under 64
    // busy connections carried one event).
    this.#flushing ??= Promise.resolve().then(() => this.#flush());
  }

  /**
   * Waits for queued appends, then closes the segment (cut to what was written, so a stopped node
   * leaves plain JSONL) and removes the spare. Safe to call twice.
   */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing !== undefined) await this.#flushing;
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle !== undefined) {
      try {
        await this.#trim(handle);
      } finally {
        await handle.close();
      }
    }
    await this.#spare?.discard();
  }

  async #flush(): Promise<void> {
    for (;;) {
      const rotation = this.#rotateRequested;
      if (rotation !== undefined) {
        this.#rotateRequested = undefined;
        await this.#closeSegment().catch((err: unknown) => {
          this.#opts.log.error('journal rotation failed', { error: describeError(err) });
        });
        rotation.resolve();
      }
      const batch = this.#queue.splice(0);
      if (batch.length === 0) {
        // Cleared in the same turn as the empty check, so no append can be left waiting.
        this.#flushing = undefined;
        return;
      }
      const firstSeq = this.#nextSeq;
      const ts = new Date().toISOString();
      // The waiters whose lines are in this write, with their entries.
      const written: { waiter: AppendWaiter; entries: JournalEntry[] }[] = [];
      // Only while a sink takes the lines, as when they were written: one set meanwhile starts with the next group.
      const handing = this.#sink !== undefined;
      // Every entry in order (handed off), and where each line ends: that places it in the segment.
      const all: JournalEntry[] = [];
      const ends: number[] = [];
      // Encoded straight into the writer's one buffer, reused: this loop is its only user until the write below is done.
      const lines = this.#lines;
      lines.reset();
      let seq = firstSeq;
      for (const p of batch) {
        const before = { seq, bytes: lines.length, handed: all.length };
        const mine: JournalEntry[] = [];
        try {
          for (const input of p.inputs) {
            const e = journalEntry(seq++, ts, input);
            const end = lines.add(e);
            mine.push(e);
            if (handing) {
              ends.push(end);
              all.push(e);
            }
          }
        } catch (err) {
          // Refused alone, its lines taken back: thrown from here it left this loop rejected and
          // `#flushing` set, so every later append waited for good (outside review, thirteenth round).
          seq = before.seq;
          lines.cut(before.bytes);
          all.length = before.handed;
          ends.length = before.handed;
          this.#opts.log.error('journal entry could not be encoded; its write is refused', { error: describeError(err) });
          p.failed(new SluiceError('internal', 'the write could not be journaled', { cause: err }));
          continue;
        }
        written.push({ waiter: p, entries: mine });
      }
      if (written.length === 0) continue;
      const bytes = lines.bytes();
      let at: { segment: number; start: number; after: DurableBatch['after'] };
      try {
        at = await this.#writeDurably(bytes, firstSeq);
      } catch (err) {
        // Once an outage: a full disk fails every group commit, hundreds a second.
        if (this.#failure === undefined) this.#opts.log.error('journal write failed', { error: describeError(err), dir: this.nodeDir, note: 'logged once until a write succeeds' });
        this.#failure = describeError(err);
        const failure = new SluiceError('journal_unavailable', 'the journal could not be written', {
          cause: err,
          retryAfter: 1,
        });
        for (const w of written) w.waiter.failed(failure);
        continue;
      }
      // Readers see the new size (`active`) in the same turn as the sink gets the lines: a forwarder
      // that looked between the write's return and this continuation read them from the file.
      this.#segmentSize = at.start + bytes.length;
      this.#nextSeq = seq;
      if (this.#failure !== undefined) this.#opts.log.info('journal writes again', { dir: this.nodeDir });
      this.#failure = undefined;
      for (const w of written) this.#tell(w.waiter, w.entries);
      if (handing) this.#handOver(at, all, ends);
      this.#opts.metrics.journalGroupCommitRecords.observe(seq - firstSeq);
      this.durable.advance(seq - 1);
    }
  }

  /**
   * Tells a waiter its lines are durable. Its callback may not throw; one that did was caught as a
   * failed write, so the rest of the group was told both outcomes and its durable mark and hand-off
   * were skipped (outside review, thirteenth round): it is logged instead, and the group goes on.
   */
  #tell(p: AppendWaiter, entries: JournalEntry[]): void {
    try {
      p.journaled(entries);
    } catch (err) {
      this.#opts.log.error("a durable write's answer failed", { error: describeError(err) });
    }
  }

  /** Gives the sink the lines just made durable; `ends` are their ends in `bytes`, which went to `at.start`. */
  #handOver(at: { segment: number; start: number; after: DurableBatch['after'] }, entries: JournalEntry[], ends: number[]): void {
    const placed = ends.map((end) => at.start + end);
    this.#sink?.push({ segment: at.segment, start: at.start, entries, ends: placed, ...(at.after === undefined ? {} : { after: at.after }) });
  }

  /** Appends and fsyncs `bytes`; says where they went (and, when they opened a segment, where the last one ended). */
  async #writeDurably(bytes: Buffer, firstSeq: number): Promise<{ segment: number; start: number; after: DurableBatch['after'] }> {
    let after: DurableBatch['after'];
    if (this.#handle === undefined || (this.#segmentSize > 0 && this.#segmentSize + bytes.length > this.#opts.segmentBytes)) {
      await this.#rotate(firstSeq);
      after = this.#lastSealedEnd;
    }
    const handle = this.#handle;
    if (handle === undefined) throw new SluiceError('internal', 'journal segment is not open');
    const sizeBefore = this.#segmentSize;
    try {
      // The segment is open with O_DSYNC: each write returns once its bytes (and the size that
      // reaches them) are on disk, as write + fdatasync did, in one trip through Bun's thread pool.
      const started = performance.now();
      await writeAll(handle, bytes, sizeBefore);
      this.#opts.metrics.journalFsyncSeconds.observe((performance.now() - started) / 1000);
    } catch (err) {
      // Cut a partial write off so the next line does not glue onto it (zeros and all: the segment
      // grows as it is written from here on).
      await handle.truncate(sizeBefore).then(
        () => (this.#preallocated = false),
        () => {},
      );
      throw err;
    }
    this.#opts.metrics.journalBytesWritten.inc(bytes.length);
    return { segment: this.#segmentFirstSeq, start: sizeBefore, after: sizeBefore === 0 ? after : undefined };
  }

  async #closeSegment(): Promise<void> {
    if (this.#handle === undefined) return;
    const closed = this.#segmentFirstSeq;
    // Cut before the next segment exists: only the newest segment can end in zeros after a crash.
    await this.#trim(this.#handle);
    await this.#handle.close();
    if (this.#nextSeq > closed) this.#sealedLast.set(closed, this.#nextSeq - 1);
    this.#lastSealedEnd = { segment: closed, offset: this.#segmentSize };
    this.#handle = undefined;
    this.sealed.advance(this.sealedBelow);
  }

  async #rotate(firstSeq: number): Promise<void> {
    await this.#closeSegment();
    await this.#openSegment(segmentFileName(firstSeq), true);
    // The new directory entry must survive a crash too.
    const dirHandle = await open(this.nodeDir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }

  /** Cuts a preallocated segment's zeros off, durably. */
  async #trim(handle: FileHandle): Promise<void> {
    if (!this.#preallocated) return;
    await handle.truncate(this.#segmentSize);
    await handle.datasync();
    this.#preallocated = false;
  }

  /** Opens `file`: a new one (from the spare when one is ready), or an existing one (start-up) to append to. */
  async #openSegment(file: string, fresh: boolean): Promise<void> {
    const path = join(this.nodeDir, file);
    const fromSpare = fresh && (await this.#spare?.takeAs(path)) === true;
    const handle = await open(path, SEGMENT_FLAGS);
    // A spare's zeros are not content: writes start at its beginning.
    this.#segmentSize = fromSpare ? 0 : (await handle.stat()).size;
    this.#preallocated = fromSpare;
    this.#spare?.prepare();
    this.#segmentFirstSeq = parseSegmentFileName(file)?.firstSeq ?? 0;
    this.#segmentOpenedAt = Date.now();
    this.#handle = handle;
  }
}

/**
 * Write, create, with O_DSYNC: a write is durable when it returns, without an fdatasync after it. Not
 * O_APPEND: a preallocated segment is written at the end of its content, not of its file.
 */
const SEGMENT_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_DSYNC;

/** The entry of an input: a literal rather than a spread, the same fields (traceparent only when set). */
function journalEntry(seq: number, ts: string, input: Envelope): JournalEntry {
  const e: JournalEntry = {
    seq,
    ts,
    tenant_id: input.tenant_id,
    dedupe_key: input.dedupe_key,
    topic: input.topic,
    request_id: input.request_id,
    headers: input.headers,
    payload: input.payload,
  };
  if (input.traceparent !== undefined) e.traceparent = input.traceparent;
  return e;
}

/**
 * Start-up check of the sealed plain segments (cheap: their last line is read from the end): each must
 * end just before the next one starts. Gzipped ones were checked whole when they were compressed.
 */
async function checkSealedTails(segments: SegmentFile[], integrity: JournalIntegrity): Promise<void> {
  for (let i = 0; i + 1 < segments.length; i++) {
    const seg = segments[i];
    const next = segments[i + 1];
    if (seg === undefined || next === undefined || seg.gzipped) continue;
    const last = await lastSeqOf(seg.path);
    const expected = next.firstSeq - 1;
    if (last !== undefined && last !== expected) {
      integrity.report({
        kind: 'gap',
        file: seg.path,
        message: last < expected ? `segment ends at seq ${last} but the next one starts at ${next.firstSeq}: ${expected - last} record(s) in no file` : `segment ends at seq ${last}, past the next segment's first seq ${next.firstSeq}`,
        after: last,
        seq: next.firstSeq,
      });
    }
  }
}

/**
 * The checkpoint's segment is gone while records after it remain, or the checkpoint points past the
 * end of its (plain) segment: either way records the forwarder counted on are not in the files.
 */
async function checkCheckpointSegment(cp: Checkpoint, segments: SegmentFile[], integrity: JournalIntegrity, nodeDir: string): Promise<void> {
  const file = join(nodeDir, CHECKPOINT_FILE);
  const seg = segments.find((s) => s.firstSeq === cp.segment);
  if (seg === undefined) {
    const later = segments.find((s) => s.firstSeq > cp.segment);
    // Retention deletes forwarded segments only: the next one must start right after the checkpoint.
    if (later !== undefined && later.firstSeq !== cp.seq + 1 && cp.offset > 0) {
      integrity.report({
        kind: 'missing_segment',
        file,
        message: `the checkpoint's segment ${segmentFileName(cp.segment)} is missing and the next one starts at seq ${later.firstSeq}, not ${cp.seq + 1}`,
        after: cp.seq,
        seq: later.firstSeq,
      });
    }
    return;
  }
  if (!seg.gzipped && cp.offset > seg.bytes) {
    integrity.report({
      kind: 'checkpoint_ahead',
      file: seg.path,
      message: `the checkpoint is at byte ${cp.offset} but the segment holds ${seg.bytes} bytes`,
      after: cp.seq,
    });
  }
}
