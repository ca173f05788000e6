import { unlink } from 'node:fs/promises';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { compressSegment, listSegments, syncDir } from './segments.ts';
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
}

/** Background upkeep of a node's journal: rotation by age, gzip of closed segments, retention. */
export class JournalMaintenance {
  #opts: MaintenanceOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #warnedFull = false;

  constructor(opts: MaintenanceOptions) {
    this.#opts = opts;
  }

  start(): void {
    this.#timer ??= setInterval(() => this.kick(), this.#opts.intervalMs);
    this.kick();
  }

  /** Runs a pass soon (after a rotation, say); passes never overlap. */
  kick(): void {
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#running = this.runOnce()
      .catch((err: unknown) => this.#opts.log.error('journal maintenance failed', { error: describeError(err) }))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /** Stops the timer and waits for a pass in progress. Safe to call twice. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#again = false;
    await this.#running;
  }

  async runOnce(now = Date.now()): Promise<void> {
    const { writer, log, metrics } = this.#opts;
    writer.rotateIfOlderThan(this.#opts.maxSegmentAgeMs, now);
    const activeSeq = writer.active?.firstSeq;
    for (const seg of await listSegments(writer.nodeDir)) {
      if (seg.gzipped || seg.firstSeq === activeSeq) continue;
      const { bytesIn, bytesOut } = await compressSegment(writer.nodeDir, seg.firstSeq);
      metrics.journalCompressed.inc();
      log.info('journal segment compressed', { file: seg.file, bytes_in: bytesIn, bytes_out: bytesOut });
    }

    const segments = await listSegments(writer.nodeDir);
    let total = segments.reduce((n, s) => n + s.bytes, 0);
    const forwarded = this.#opts.forwardedThrough();
    let blocked = false;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      if (seg === undefined || seg.firstSeq === activeSeq) break;
      const tooOld = now - seg.mtimeMs > this.#opts.retentionMs;
      const tooBig = total > this.#opts.retentionBytes;
      if (!tooOld && !tooBig) break;
      const lastSeq = (segments[i + 1]?.firstSeq ?? writer.nextSeq) - 1;
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
    metrics.journalBytes.set(remaining.reduce((n, s) => n + s.bytes, 0));
    metrics.journalSegments.set({ state: 'active' }, remaining.filter((s) => s.firstSeq === writer.active?.firstSeq).length);
    metrics.journalSegments.set({ state: 'plain' }, remaining.filter((s) => !s.gzipped && s.firstSeq !== writer.active?.firstSeq).length);
    metrics.journalSegments.set({ state: 'gzipped' }, remaining.filter((s) => s.gzipped).length);
  }
}
