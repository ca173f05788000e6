import type { JournalEntry } from '../core/record.ts';
import type { Checkpoint } from '../journal/checkpoint.ts';
import type { DurableBatch, DurableSink } from '../journal/writer.ts';

/**
 * The hand-off's bound: at most this many entries, and lines of at most this many bytes, wait in
 * memory for the forwarder. A batch that would pass either is refused and the forwarder reads it
 * from the file instead, stopping where the held entries begin and taking those from memory. 16,384
 * entries is about 160 ms of writes at 100,000 events/s, several forwarder commits
 * (SLUICE_FORWARD_BATCH, 1,000 by default): a forwarder that keeps up never meets the bound. Its cost
 * is the entries held: measured ~1 KB of RSS an entry under the NDJSON bench (the line's text, twice
 * that outside Latin-1, which the engine keeps as UTF-16; the entry's objects; its place in the
 * batch), so ~16 MiB while the outbox stalls or the forwarder is behind and the queue stays full.
 */
export const HANDOFF_MAX_ENTRIES = 16_384;
export const HANDOFF_MAX_BYTES = 8 * 1024 * 1024;

interface Queued extends DurableBatch {
  bytes: number;
}

/** Entries taken from memory and the checkpoint that passes them: exactly what reading the file would give. */
export interface Taken {
  entries: JournalEntry[];
  next: Checkpoint;
}

/**
 * The journal → outbox hand-off in memory: the writer pushes each group commit's durable lines with
 * their place in the segment; the forwarder takes those that follow its checkpoint byte for byte.
 * Nothing here is needed for correctness: whatever the queue cannot give (refused at the bound, or
 * written before the forwarder started, or after a restart) is read from the files, and an entry is
 * dropped only once the checkpoint has passed its seq.
 */
export class HandoffQueue implements DurableSink {
  #batches: Queued[] = [];
  #entries = 0;
  #bytes = 0;
  #refused = 0;
  /** Where the writer's newest durable line ends, queued or not. */
  #end: { segment: number; offset: number } | undefined;
  readonly #maxEntries: number;
  readonly #maxBytes: number;

  constructor(bound: { entries: number; bytes: number } = { entries: HANDOFF_MAX_ENTRIES, bytes: HANDOFF_MAX_BYTES }) {
    this.#maxEntries = bound.entries;
    this.#maxBytes = bound.bytes;
  }

  /** Entries refused at the bound since the queue was made (each is read from its file instead). */
  get refused(): number {
    return this.#refused;
  }

  /** Entries waiting. */
  get size(): number {
    return this.#entries;
  }

  /** About how many entries wait past `seq` (the forwarder's checkpoint): batches it passed are dropped first. */
  waitingAfter(seq: number): number {
    this.#dropThrough(seq);
    return this.#entries;
  }

  push(batch: DurableBatch): void {
    const last = batch.ends.at(-1);
    if (last === undefined) return;
    this.#end = { segment: batch.segment, offset: last };
    const bytes = last - batch.start;
    if (this.#entries + batch.entries.length > this.#maxEntries || this.#bytes + bytes > this.#maxBytes) {
      this.#refused += batch.entries.length;
      return;
    }
    this.#batches.push({ ...batch, bytes });
    this.#entries += batch.entries.length;
    this.#bytes += bytes;
  }

  /**
   * True when `cp` stands where the writer's newest durable line ends and nothing waits: the files
   * hold nothing more for the forwarder.
   */
  caughtUp(cp: Checkpoint): boolean {
    return this.#batches.length === 0 && this.#end !== undefined && cp.segment === this.#end.segment && cp.offset === this.#end.offset;
  }

  /**
   * The entries that follow `cp` directly (same segment, next byte, next seq), at most `max`, none
   * past `through`, all in one segment; `held` when the next one is past `through`; undefined when
   * the queue does not hold what follows `cp` (the forwarder reads the file then). Entries stay queued
   * until a later call's `cp` has passed them, so a failed commit takes them again.
   */
  take(cp: Checkpoint, max: number, through: number): Taken | 'held' | undefined {
    this.#dropThrough(cp.seq);
    const head = this.#batches[0];
    if (head === undefined) return undefined;
    const first = head.entries.findIndex((e) => e.seq > cp.seq);
    const firstEntry = head.entries[first];
    if (firstEntry === undefined || firstEntry.seq !== cp.seq + 1) return undefined;
    const at = first === 0 ? head.start : (head.ends[first - 1] ?? -1);
    let line: number;
    if (head.segment === cp.segment && at === cp.offset) line = cp.line;
    else if (first === 0 && head.start === 0 && head.after?.segment === cp.segment && head.after.offset === cp.offset) line = 1;
    else return undefined;
    if (firstEntry.seq > through) return 'held';
    const entries: JournalEntry[] = [];
    const next: Checkpoint = { segment: head.segment, offset: at, line, seq: cp.seq };
    for (const batch of this.#batches) {
      if (batch.segment !== next.segment || (batch !== head && batch.start !== next.offset)) break;
      for (let i = batch === head ? first : 0; i < batch.entries.length; i++) {
        const e = batch.entries[i];
        const end = batch.ends[i];
        if (e === undefined || end === undefined || entries.length >= max || e.seq > through || e.seq !== next.seq + 1) return { entries, next };
        entries.push(e);
        next.offset = end;
        next.line++;
        next.seq = e.seq;
      }
    }
    return { entries, next };
  }

  /**
   * Where in `cp`'s segment, at or past `cp`, the entries held here begin: the forwarder reads the
   * file up to there and takes the rest from memory, instead of reading past them and dropping them
   * unused. `cp.offset` itself when they follow `cp` directly, as `take` gives them: handed over
   * after a `take` found the queue empty, while the forwarder listed the segments (the first lines
   * after a start). Undefined when the queue holds nothing further on in that segment.
   */
  heldFrom(cp: Checkpoint): number | undefined {
    this.#dropThrough(cp.seq);
    const head = this.#batches[0];
    if (head === undefined || head.segment !== cp.segment) return undefined;
    const first = head.entries.findIndex((e) => e.seq > cp.seq);
    const at = first <= 0 ? head.start : head.ends[first - 1];
    if (at === undefined || at < cp.offset) return undefined;
    return at > cp.offset || head.entries[first]?.seq === cp.seq + 1 ? at : undefined;
  }

  /** Drops the batches whose every entry is at or below `seq`: the checkpoint passed them. */
  #dropThrough(seq: number): void {
    let n = 0;
    for (const b of this.#batches) {
      const last = b.entries.at(-1);
      if (last === undefined || last.seq > seq) break;
      this.#entries -= b.entries.length;
      this.#bytes -= b.bytes;
      n++;
    }
    if (n > 0) this.#batches.splice(0, n);
  }
}
