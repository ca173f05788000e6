import { unlink } from 'node:fs/promises';
import { BackgroundLoop } from '../background-loop.ts';
import type { Clock } from '../core/clock.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { compressSegment, listSegments, syncDir, type SegmentFile } from './segments.ts';
import { follow } from '../core/watermark.ts';
import type { JournalWriter } from './writer.ts';

export interface MaintenanceOptions {
  writer: JournalWriter;
  /** Close the active segment once it is this old (and not empty). */
  maxSegmentAgeMs: number;
  /** Delete forwarded segments older than this... */
  retentionMs: number;
  /** ...or, oldest first, while all segments together hold more than this. */
  retentionBytes: number;
  intervalMs: number;
  /** Last seq the forwarder has put into the outbox: nothing after it is ever deleted. */
  forwardedThrough(): number;
  log: Logger;
  metrics: Metrics;
  clock?: Clock;
}

/**
 * Background upkeep of a node's journal: rotation by age, gzip of closed segments, retention. A pass
 * runs every `intervalMs` and as soon as the writer seals a segment; passes never overlap.
 */
export class JournalMaintenance {
  #opts: MaintenanceOptions;
  #loop: BackgroundLoop;
  #following = false;
  #warnedFull = false;
  /** Segments whose gzipped copy failed its check: kept plain, reported once, not retried every pass. */
  #refused = new Set<number>();

  constructor(opts: MaintenanceOptions) {
    this.#opts = opts;
    this.#loop = new BackgroundLoop({
      name: 'journal maintenance',
      log: opts.log,
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      intervalMs: opts.intervalMs,
      pass: () => this.runOnce(),
      failed: (err) => {
        opts.log.error('journal maintenance failed', { error: describeError(err) });
        return opts.intervalMs;
      },
    });
  }

  start(): void {
    if (this.#following) return;
    this.#following = true;
    this.#loop.start();
    follow(this.#opts.writer.sealed, this.#loop.signal, () => this.kick());
  }

  /** Runs a pass soon (after a rotation, say); passes never overlap. */
  kick(): void {
    this.#loop.wake();
  }

  /** Waits for a pass in progress, then stops. Safe to call twice. */
  stop(): Promise<void> {
    return this.#loop.stop();
  }

  async runOnce(now = Date.now()): Promise<void> {
    const { writer, log, metrics } = this.#opts;
    await writer.rotateIfOlderThan(this.#opts.maxSegmentAgeMs, now);
    // Read once, before the directory: a segment below it is sealed for good, whatever the writer
    // does while this pass runs; anything at or above it is left alone.
    const sealedBelow = writer.sealedBelow;
    const sealed = (await listSegments(writer.nodeDir)).filter((s) => s.firstSeq < sealedBelow);
    for (const seg of sealed) {
      if (seg.gzipped || this.#refused.has(seg.firstSeq)) continue;
      // Segments sealed before this process started had their tails checked at start-up.
      const result = await compressSegment(writer.nodeDir, seg.firstSeq, writer.sealedLastSeq(seg.firstSeq));
      if (!result.ok) {
        this.#refused.add(seg.firstSeq);
        writer.integrity.report({
          kind: 'compression_mismatch',
          file: seg.path,
          message: `not compressed, the plain segment is kept: ${result.reason}`,
          ...(result.range.hole !== undefined ? { after: result.range.hole.after, seq: result.range.hole.seq, line: result.range.hole.line } : {}),
        });
        continue;
      }
      metrics.journalCompressed.inc();
      log.info('journal segment compressed', { file: seg.file, bytes_in: result.bytesIn, bytes_out: result.bytesOut, first_seq: result.range.first, last_seq: result.range.last });
    }

    const listed = await listSegments(writer.nodeDir);
    const segments = listed.filter((s) => s.firstSeq < sealedBelow);
    let total = journalBytes(listed, writer);
    const forwarded = this.#opts.forwardedThrough();
    let blocked = false;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      if (seg === undefined) break;
      const tooOld = now - seg.mtimeMs > this.#opts.retentionMs;
      const tooBig = total > this.#opts.retentionBytes;
      if (!tooOld && !tooBig) break;
      const lastSeq = (segments[i + 1]?.firstSeq ?? sealedBelow) - 1;
      if (lastSeq > forwarded) {
        blocked = tooBig;
        break;
      }
      await unlink(seg.path);
      total -= seg.bytes;
      metrics.journalRetentionDeletedSegments.inc();
      metrics.journalRetentionDeletedRecords.inc(lastSeq - seg.firstSeq + 1);
      log.info('journal segment deleted by retention', { file: seg.file, reason: tooOld ? 'age' : 'bytes', last_seq: lastSeq });
    }
    if (blocked && !this.#warnedFull) {
      log.warn('journal is over its byte retention but the rest is not forwarded yet; keeping it', {
        bytes: total,
        limit: this.#opts.retentionBytes,
        forwarded_through: forwarded,
      });
    }
    this.#warnedFull = blocked;
    await syncDir(writer.nodeDir);

    const remaining = await listSegments(writer.nodeDir);
    metrics.journalBytes.set(journalBytes(remaining, writer));
    metrics.journalSegments.set({ state: 'active' }, remaining.filter((s) => s.firstSeq === writer.active?.firstSeq).length);
    metrics.journalSegments.set({ state: 'plain' }, remaining.filter((s) => !s.gzipped && s.firstSeq !== writer.active?.firstSeq).length);
    metrics.journalSegments.set({ state: 'gzipped' }, remaining.filter((s) => s.gzipped).length);
  }
}

/** The segments' bytes, the active one's as far as it is written: a preallocated file's zeros hold no records. */
function journalBytes(segments: SegmentFile[], writer: JournalWriter): number {
  const active = writer.active;
  return segments.reduce((n, s) => n + (s.firstSeq === active?.firstSeq && !s.gzipped ? Math.min(s.bytes, active.durableBytes) : s.bytes), 0);
}
