import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { rawMember, strictJsonEnd } from '../json-text.ts';
import type { JournalEntry } from '../core/record.ts';
import type { Checkpoint } from './checkpoint.ts';
import { leadingSeq } from './entry.ts';
import type { JournalIntegrity } from './integrity.ts';
import { listSegments, type SegmentFile } from './segments.ts';
import type { JournalWriter } from './writer.ts';

/** One line of a segment: 1-based number, byte offsets of its start and of the next line (uncompressed). */
export interface SegmentLine {
  line: number;
  start: number;
  end: number;
  text: string;
}

export interface BadLine {
  file: string;
  line: number;
  reason: string;
}

/** Bytes read (and inflated) at a time. */
const READ_CHUNK = 1 << 20;

/**
 * Streams the whole (newline-terminated) lines of a segment, plain or gzipped, starting at an
 * uncompressed byte offset. A trailing line without a newline is not yielded: it may still be written.
 * The segment's written part ends at its first NUL byte (a preallocated segment's zeros: see
 * recover.ts, contentEnd); nothing after it is read.
 */
export async function* readSegmentLines(
  path: string,
  opts: {
    gzipped: boolean;
    from?: number;
    to?: number;
    firstLine?: number;
    /** Told how many bytes follow the last newline (a torn or still-growing line), if any. */
    onPartial?: (bytes: number) => void;
    /** Told where the first NUL byte is, if the read met one: the written part ended there. */
    onZeros?: (offset: number) => void;
    /** Told of each chunk read from the file, in bytes as stored (compressed for gzip): for progress. */
    onRead?: (bytes: number) => void;
  },
): AsyncGenerator<SegmentLine> {
  const from = opts.from ?? 0;
  // Checked first: a stream with end < start is a synchronous ERR_OUT_OF_RANGE, not an empty read.
  if (!opts.gzipped && opts.to !== undefined && opts.to <= from) return;
  // Plain files are read from the offset directly; gzip has to be inflated from the start. Chunks
  // of READ_CHUNK: each chunk costs a callback and a promise turn of its own.
  const range = opts.to !== undefined ? { end: opts.to - 1 } : {};
  const file = opts.gzipped ? createReadStream(path, { highWaterMark: READ_CHUNK }) : createReadStream(path, { start: from, ...range, highWaterMark: READ_CHUNK });
  const onRead = opts.onRead;
  if (onRead !== undefined) file.on('data', (chunk) => onRead(chunk.length));
  const source = opts.gzipped ? file.pipe(createGunzip({ chunkSize: READ_CHUNK })) : file;
  // pipe() does not pass the file's own errors (ENOENT, EIO) on: without this the read never ends.
  if (source !== file) file.on('error', (err) => source.destroy(err));
  let skip = opts.gzipped ? from : 0;
  let pos = from;
  let line = opts.firstLine ?? 1;
  let pending: Buffer = Buffer.alloc(0);
  let zerosAt: number | undefined;
  for await (const raw of source) {
    let chunk = raw as Buffer;
    if (skip > 0) {
      if (chunk.length <= skip) {
        skip -= chunk.length;
        continue;
      }
      chunk = chunk.subarray(skip);
      skip = 0;
    }
    const nul = chunk.indexOf(0);
    if (nul >= 0) {
      zerosAt = pos + pending.length + nul;
      chunk = chunk.subarray(0, nul);
    }
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let nl = pending.indexOf(0x0a);
    let consumed = 0;
    while (nl >= 0) {
      const text = pending.subarray(consumed, nl).toString('utf8');
      const end = pos + (nl + 1 - consumed);
      yield { line, start: pos, end, text };
      line++;
      pos = end;
      consumed = nl + 1;
      nl = pending.indexOf(0x0a, consumed);
    }
    pending = pending.subarray(consumed);
    if (zerosAt !== undefined) break;
  }
  // A break leaves the file open behind gunzip's pipe: closed here, read to its end or not.
  file.destroy();
  if (pending.length > 0) opts.onPartial?.(pending.length);
  if (zerosAt !== undefined) opts.onZeros?.(zerosAt);
}

/** Parses a journal line; returns why not when it is not a usable entry. */
export function parseEntry(text: string): JournalEntry | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${(err as Error).message}`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const e = value as Record<string, unknown>;
  if (typeof e.seq !== 'number' || !Number.isSafeInteger(e.seq)) return 'missing or invalid "seq"';
  for (const field of ['ts', 'tenant_id', 'dedupe_key', 'topic', 'request_id'] as const) {
    if (typeof e[field] !== 'string') return `missing or invalid "${field}"`;
  }
  if (typeof e.headers !== 'object' || e.headers === null || Array.isArray(e.headers)) return 'missing or invalid "headers"';
  if (e.traceparent !== undefined && typeof e.traceparent !== 'string') return 'invalid "traceparent"';
  const payload = payloadText(text, e);
  if (payload === undefined) return 'missing or invalid "payload"';
  return { ...(value as JournalEntry), payload };
}

/**
 * parseEntry for the forwarder, cheaper on the lines formatEntry writes: its fields in its order,
 * strings without escapes, the payload spliced in. Those are read by position instead of by
 * JSON.parse of the whole line and rawMember for the payload's text: measured ~0.85 against ~1.25 µs
 * for a 294-byte line. It accepts only lines parseEntry accepts, with the same result: the payload and
 * non-empty headers still go through JSON.parse, so a line it lets through is valid JSON throughout.
 * Any other line, or anything unexpected, takes parseEntry, which says what is wrong.
 */
export function parseOwnEntry(text: string): JournalEntry | string {
  return ownEntry(text) ?? parseEntry(text);
}

const OWN_FIELDS = ['ts', 'tenant_id', 'dedupe_key', 'topic', 'request_id'] as const;
const OWN_PREFIXES = OWN_FIELDS.map((f) => `,"${f}":"`);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** How deep the payload scan of ownEntry follows containers (ingest refuses deeper ones unless SLUICE_MAX_JSON_DEPTH allows them). */
const PAYLOAD_SCAN_DEPTH = 128;

function ownEntry(t: string): JournalEntry | undefined {
  if (!t.startsWith('{"seq":')) return undefined;
  let i = 7;
  while (i < t.length && t.charCodeAt(i) >= 0x30 && t.charCodeAt(i) <= 0x39) i++;
  // 15 digits at most: every such number is a safe integer. JSON allows no leading zero.
  if (i === 7 || i - 7 > 15 || (i - 7 > 1 && t.charCodeAt(7) === 0x30)) return undefined;
  const seq = Number(t.slice(7, i));
  const strings: string[] = [];
  for (const prefix of OWN_PREFIXES) {
    if (!t.startsWith(prefix, i)) return undefined;
    i += prefix.length;
    const end = plainStringEnd(t, i);
    if (end < 0) return undefined;
    strings.push(t.slice(i, end));
    i = end + 1;
  }
  if (!t.startsWith(',"headers":', i)) return undefined;
  i += 11;
  let headers: Record<string, string>;
  if (t.startsWith('{}', i)) {
    headers = {};
    i += 2;
  } else {
    const end = objectEnd(t, i);
    if (end < 0) return undefined;
    try {
      headers = JSON.parse(t.slice(i, end)) as Record<string, string>;
    } catch {
      return undefined;
    }
    i = end;
  }
  if (!t.startsWith(',"payload":', i)) return undefined;
  i += 11;
  // Checked by JSON's grammar without building it (JSON.parse made its objects only to drop them);
  // a payload the scan does not take, nested deeper than it goes say, takes parseEntry.
  if (t.charCodeAt(i) !== 0x7b) return undefined;
  const payloadEnd = strictJsonEnd(t, i, PAYLOAD_SCAN_DEPTH);
  if (payloadEnd < 0) return undefined;
  const payload = t.slice(i, payloadEnd);
  let traceparent: string | undefined;
  i = payloadEnd;
  if (t.startsWith(',"traceparent":"', i)) {
    i += 16;
    const end = plainStringEnd(t, i);
    if (end < 0) return undefined;
    traceparent = t.slice(i, end);
    i = end + 1;
  }
  if (i !== t.length - 1 || t.charCodeAt(i) !== 0x7d) return undefined;
  const [ts, tenant_id, dedupe_key, topic, request_id] = strings as [string, string, string, string, string];
  return { seq, ts, tenant_id, dedupe_key, topic, request_id, headers, payload, ...(traceparent === undefined ? {} : { traceparent }) };
}

/** Index of the quote that ends a string starting at `i` (past its opening quote); -1 for one with an escape or a control character. */
function plainStringEnd(t: string, i: number): number {
  for (; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === QUOTE) return i;
    if (c === BACKSLASH || c < 0x20) return -1;
  }
  return -1;
}

/**
 * Index just past the JSON object at `i`, its brackets balanced outside strings; -1 when it is not
 * one (cut short, a control character in a string, a bracket that does not match).
 */
function objectEnd(t: string, i: number): number {
  if (t.charCodeAt(i) !== 0x7b) return -1;
  const open: number[] = [];
  for (; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < t.length; i++) {
        const s = t.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
        else if (s < 0x20) return -1;
      }
    } else if (c === 0x7b || c === 0x5b) {
      open.push(c + 2);
    } else if (c === 0x7d || c === 0x5d) {
      if (open.pop() !== c) return -1;
      if (open.length === 0) return i + 1;
    }
  }
  return -1;
}

/** The payload's exact text: spliced into the line (`payload`) or, holding line breaks, `payload_text`. */
function payloadText(line: string, e: Record<string, unknown>): string | undefined {
  if (isObject(e.payload)) return rawMember(line, 'payload');
  if (typeof e.payload_text !== 'string') return undefined;
  try {
    return isObject(JSON.parse(e.payload_text)) ? e.payload_text : undefined;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What reading a node's journal asks of its writer: where the segments are, which is active, how far it is fsynced. */
export type JournalSource = Pick<JournalWriter, 'nodeDir' | 'active' | 'sealedBelow' | 'integrity'>;

/**
 * Reads every entry past `afterSeq` without changing anything (to seed ingest's start-up state),
 * as far as the journal is fsynced. From `from` (a forwarder checkpoint) when `afterSeq` is its seq;
 * otherwise from the segment holding the first such entry (`afterSeq` may be before the checkpoint),
 * lines below it skipped by their leading seq without being parsed. A gzipped segment that cannot be
 * inflated to its end is reported and read past.
 */
export async function readEntriesAfter(
  journal: JournalSource,
  from: Checkpoint,
  afterSeq: number,
  visit: (e: JournalEntry) => void,
  // Listed once, not per segment: a journal of thousands of segments (small SLUICE_JOURNAL_SEGMENT_BYTES)
  // took minutes to read when each step listed and stat'ed the whole directory again.
  listing = new SegmentListing(journal.nodeDir),
): Promise<void> {
  const floor = afterSeq;
  let cp = from;
  if (floor !== cp.seq) {
    const segments = await listing.list();
    // Before the checkpoint, retention may have deleted the segment of floor + 1: the oldest left then.
    const first = segments.filter((s) => s.firstSeq <= floor + 1).at(-1) ?? (floor < cp.seq ? segments[0] : undefined);
    if (first !== undefined && (floor < cp.seq || first.firstSeq > cp.segment)) cp = { segment: first.firstSeq, offset: 0, line: 1, seq: Math.min(floor, cp.seq) };
  }
  for (;;) {
    const seg = await segmentAt(journal, cp, listing);
    if (seg === undefined) return;
    if (seg.firstSeq !== cp.segment) cp = { segment: seg.firstSeq, offset: 0, line: 1, seq: cp.seq };
    let last = cp.seq;
    let read = false;
    try {
      for await (const l of durableLines(journal, seg, cp, seg.firstSeq < journal.sealedBelow)) {
        read = true;
        const lead = leadingSeq(l.text);
        if (lead !== undefined) last = Math.max(last, lead);
        if (lead !== undefined && lead <= floor) continue;
        const e = parseOwnEntry(l.text);
        if (typeof e === 'string') continue;
        if (e.seq > floor) visit(e);
      }
    } catch (err) {
      const gone = !read && (err as NodeJS.ErrnoException).code === 'ENOENT';
      // Gzipped (renamed, then unlinked) since the listing: read the .gz.
      if (gone && !seg.gzipped && (await gzippedSince(listing, seg))) continue;
      // Deleted by retention since the listing (made once, at the start of a read that can take a
      // while): it only deletes forwarded segments, whose keys the outbox holds. Go on with the next.
      if (!gone) {
        if (!(seg.gzipped && isZlibError(err))) throw err;
        reportDamaged(journal.integrity, seg, last, (err as Error).message);
      }
    }
    const next = await nextSegment(listing, seg);
    if (next === undefined) return;
    cp = { segment: next.firstSeq, offset: 0, line: 1, seq: cp.seq };
  }
}

/**
 * A node directory's segments for one reading pass: listed once, and again only when what is looked
 * for is not in the listing (the writer rotated since) or a listed file is gone (gzipped since).
 */
export class SegmentListing {
  readonly #nodeDir: string;
  #segments: SegmentFile[] | undefined;
  #listings = 0;

  constructor(nodeDir: string) {
    this.#nodeDir = nodeDir;
  }

  /** How many times the directory was listed: what a read of many segments must keep small. */
  get listings(): number {
    return this.#listings;
  }

  async list(fresh = false): Promise<SegmentFile[]> {
    if (fresh || this.#segments === undefined) {
      this.#segments = await listSegments(this.#nodeDir);
      this.#listings++;
    }
    return this.#segments;
  }

  /** The first listed segment that passes `match`; a listing made before this call is made again when none does. */
  async find(match: (s: SegmentFile) => boolean): Promise<SegmentFile | undefined> {
    const listedBefore = this.#segments !== undefined;
    const found = (await this.list()).find(match);
    return found !== undefined || !listedBefore ? found : (await this.list(true)).find(match);
  }
}

/**
 * The lines of a segment from `cp`: a sealed segment to its end, the active one only as far as it is
 * fsynced; a plain one no further than `stopAt` when given (gzip is read to its end).
 */
export function durableLines(journal: Pick<JournalWriter, 'active'>, seg: SegmentFile, cp: Checkpoint, sealed: boolean, stopAt?: number): AsyncGenerator<SegmentLine> {
  const active = journal.active;
  const durable = sealed || seg.gzipped ? undefined : active?.firstSeq === seg.firstSeq ? active.durableBytes : 0;
  const to = seg.gzipped || stopAt === undefined ? durable : Math.min(durable ?? stopAt, stopAt);
  return readSegmentLines(seg.path, { gzipped: seg.gzipped, from: cp.offset, to, firstLine: cp.line });
}

/** The segment of `cp`, or (none yet, or its segment is gone) the first holding anything newer. */
export async function segmentAt(journal: Pick<JournalWriter, 'integrity'>, cp: Checkpoint, listing: SegmentListing): Promise<SegmentFile | undefined> {
  const exact = await listing.find((s) => s.firstSeq === cp.segment);
  if (exact !== undefined) return exact;
  const later = (await listing.list()).find((s) => s.firstSeq > cp.segment);
  // Retention deletes only what was forwarded, so the next segment must start right after it.
  if (later !== undefined && cp.seq > 0 && later.firstSeq !== cp.seq + 1) {
    journal.integrity.report({
      kind: 'missing_segment',
      file: later.path,
      message: `the forwarder passed seq ${cp.seq} but the next segment on disk starts at ${later.firstSeq}: ${later.firstSeq - cp.seq - 1} record(s) in no file`,
      after: cp.seq,
      seq: later.firstSeq,
    });
  }
  return later;
}

async function gzippedSince(listing: SegmentListing, seg: SegmentFile): Promise<boolean> {
  return (await listing.list(true)).some((s) => s.firstSeq === seg.firstSeq && s.gzipped);
}

export async function nextSegment(listing: SegmentListing, seg: SegmentFile): Promise<SegmentFile | undefined> {
  return listing.find((s) => s.firstSeq > seg.firstSeq);
}

/** zlib's own errors (Z_BUF_ERROR for a truncated file, Z_DATA_ERROR for a corrupt one). */
export function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('Z_');
}

export function reportDamaged(integrity: JournalIntegrity, seg: SegmentFile, after: number, reason: string): void {
  integrity.report({
    kind: 'unreadable_segment',
    file: seg.path,
    message: `gzipped segment damaged after seq ${after} (${reason}): the rest of this file is lost; forwarding goes on with the next segment`,
    after,
  });
}
