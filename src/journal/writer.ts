import { mkdirSync } from 'node:fs';
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Envelope } from '../envelope.ts';
import { formatEntry, type JournalEntry } from './entry.ts';
import { recoverTail } from './recover.ts';
import { tidySegments } from './segments.ts';
import { compareSegments, parseSegmentFileName, segmentFileName } from './segment-name.ts';

export interface JournalWriterOptions {
  dir: string;
  nodeId: string;
  segmentBytes: number;
  log: Logger;
  metrics: Metrics;
  /** After each group commit: what is durable now (the forwarder reads no further). */
  onDurable?: () => void;
  /** After a segment was closed by rotation: it may now be compressed. */
  onSegmentClosed?: (firstSeq: number) => void;
}

/** The segment being appended to and how many of its bytes are fsynced. */
export interface ActiveSegment {
  firstSeq: number;
  durableBytes: number;
}

interface Pending {
  inputs: Envelope[];
  resolve: (entries: JournalEntry[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Appends entries to `<dir>/<node>/<first seq>.jsonl`. Appends that arrive while a write+fdatasync is
 * in flight are group-committed by the next one; every promise resolves only after its fsync.
 */
export class JournalWriter {
  readonly nodeDir: string;
  #opts: JournalWriterOptions;
  #handle: FileHandle | undefined;
  #segmentFirstSeq = 0;
  #segmentOpenedAt = 0;
  #segmentSize = 0;
  #rotateRequested = false;
  #nextSeq: number;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  #failure: string | undefined;

  private constructor(opts: JournalWriterOptions, nodeDir: string, nextSeq: number) {
    this.#opts = opts;
    this.nodeDir = nodeDir;
    this.#nextSeq = nextSeq;
  }

  static async open(opts: JournalWriterOptions): Promise<JournalWriter> {
    const nodeDir = join(opts.dir, opts.nodeId);
    mkdirSync(nodeDir, { recursive: true });
    const tidied = await tidySegments(nodeDir);
    if (tidied.removedPlain.length + tidied.removedTemp.length > 0) {
      opts.log.warn('journal tidied after an interrupted compression', { dir: nodeDir, ...tidied });
    }
    const segments = (await readdir(nodeDir))
      .map(parseSegmentFileName)
      .filter((s) => s !== undefined)
      .sort(compareSegments);
    const newest = segments.at(-1);
    let nextSeq = 1;
    if (newest !== undefined) {
      const recovered = await recoverTail(join(nodeDir, newest.file), newest.gzipped);
      if (recovered.truncatedBytes > 0) {
        opts.log.warn('journal torn tail truncated', {
          file: join(nodeDir, newest.file),
          bytes: recovered.truncatedBytes,
        });
        opts.metrics.journalTornTails.inc();
      }
      nextSeq = (recovered.lastSeq ?? newest.firstSeq - 1) + 1;
    }
    const writer = new JournalWriter(opts, nodeDir, nextSeq);
    if (newest !== undefined && !newest.gzipped) await writer.#openSegment(newest.file);
    return writer;
  }

  /** Seq the next appended entry will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** The open segment, if any: a new one is created by the next append after rotation. */
  get active(): ActiveSegment | undefined {
    return this.#handle === undefined ? undefined : { firstSeq: this.#segmentFirstSeq, durableBytes: this.#segmentSize };
  }

  /** Closes the active segment if it is non-empty and older than `maxAgeMs` (rotation by age). */
  rotateIfOlderThan(maxAgeMs: number, now = Date.now()): void {
    if (this.#closed || this.#handle === undefined || this.#segmentSize === 0) return;
    if (now - this.#segmentOpenedAt < maxAgeMs) return;
    this.#rotateRequested = true;
    this.#flushing ??= this.#flush();
  }

  /** Undefined while the journal accepts writes; otherwise why it does not. */
  get failure(): string | undefined {
    return this.#failure;
  }

  append(inputs: Envelope[]): Promise<JournalEntry[]> {
    if (this.#closed) return Promise.reject(new SluiceError('shutting_down', 'journal is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ inputs, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  /** Waits for queued appends, then closes the segment. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing !== undefined) await this.#flushing;
    await this.#handle?.close();
    this.#handle = undefined;
  }

  async #flush(): Promise<void> {
    for (;;) {
      if (this.#rotateRequested) {
        this.#rotateRequested = false;
        await this.#closeSegment().catch((err: unknown) => {
          this.#opts.log.error('journal rotation failed', { error: describeError(err) });
        });
      }
      const batch = this.#queue.splice(0);
      if (batch.length === 0) {
        // Cleared in the same turn as the empty check, so no append can be left waiting.
        this.#flushing = undefined;
        return;
      }
      const firstSeq = this.#nextSeq;
      const ts = new Date().toISOString();
      const entries: JournalEntry[][] = [];
      let text = '';
      let seq = firstSeq;
      for (const p of batch) {
        const mine = p.inputs.map((input) => ({ seq: seq++, ts, ...input }));
        for (const e of mine) text += formatEntry(e);
        entries.push(mine);
      }
      const bytes = Buffer.from(text);
      try {
        await this.#writeDurably(bytes, firstSeq);
        this.#nextSeq = seq;
        this.#failure = undefined;
        batch.forEach((p, i) => p.resolve(entries[i] ?? []));
        this.#opts.onDurable?.();
      } catch (err) {
        this.#failure = describeError(err);
        this.#opts.log.error('journal write failed', { error: this.#failure, dir: this.nodeDir });
        const failure = new SluiceError('journal_unavailable', 'the journal could not be written', {
          cause: err,
          retryAfter: 1,
        });
        for (const p of batch) p.reject(failure);
      }
    }
  }

  async #writeDurably(bytes: Buffer, firstSeq: number): Promise<void> {
    if (this.#handle === undefined || (this.#segmentSize > 0 && this.#segmentSize + bytes.length > this.#opts.segmentBytes)) {
      await this.#rotate(firstSeq);
    }
    const handle = this.#handle;
    if (handle === undefined) throw new Error('journal segment is not open');
    const sizeBefore = this.#segmentSize;
    try {
      await writeAll(handle, bytes, sizeBefore);
      const started = performance.now();
      await handle.datasync();
      this.#opts.metrics.journalFsyncSeconds.observe((performance.now() - started) / 1000);
    } catch (err) {
      // Cut a partial write off so the next line does not glue onto it.
      await handle.truncate(sizeBefore).catch(() => {});
      throw err;
    }
    this.#segmentSize = sizeBefore + bytes.length;
    this.#opts.metrics.journalBytesWritten.inc(bytes.length);
  }

  async #closeSegment(): Promise<void> {
    if (this.#handle === undefined) return;
    const closed = this.#segmentFirstSeq;
    await this.#handle.close();
    this.#handle = undefined;
    this.#opts.onSegmentClosed?.(closed);
  }

  async #rotate(firstSeq: number): Promise<void> {
    await this.#closeSegment();
    await this.#openSegment(segmentFileName(firstSeq));
    // The new directory entry must survive a crash too.
    const dirHandle = await open(this.nodeDir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }

  async #openSegment(file: string): Promise<void> {
    const handle = await open(join(this.nodeDir, file), 'a');
    this.#segmentSize = (await handle.stat()).size;
    this.#segmentFirstSeq = parseSegmentFileName(file)?.firstSeq ?? 0;
    this.#segmentOpenedAt = Date.now();
    this.#handle = handle;
  }
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position + offset);
    offset += bytesWritten;
  }
}
