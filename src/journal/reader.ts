import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { rawMember } from '../json-text.ts';
import type { JournalEntry } from '../core/record.ts';

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

/**
 * Streams the whole (newline-terminated) lines of a segment, plain or gzipped, starting at an
 * uncompressed byte offset. A trailing line without a newline is not yielded: it may still be written.
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
    /** Told of each chunk read from the file, in bytes as stored (compressed for gzip): for progress. */
    onRead?: (bytes: number) => void;
  },
): AsyncGenerator<SegmentLine> {
  const from = opts.from ?? 0;
  // Checked first: a stream with end < start is a synchronous ERR_OUT_OF_RANGE, not an empty read.
  if (!opts.gzipped && opts.to !== undefined && opts.to <= from) return;
  // Plain files are read from the offset directly; gzip has to be inflated from the start.
  const file = opts.gzipped ? createReadStream(path) : createReadStream(path, { start: from, ...(opts.to !== undefined ? { end: opts.to - 1 } : {}) });
  const onRead = opts.onRead;
  if (onRead !== undefined) file.on('data', (chunk) => onRead(chunk.length));
  const source = opts.gzipped ? file.pipe(createGunzip()) : file;
  // pipe() does not pass the file's own errors (ENOENT, EIO) on: without this the read never ends.
  if (source !== file) file.on('error', (err) => source.destroy(err));
  let skip = opts.gzipped ? from : 0;
  let pos = from;
  let line = opts.firstLine ?? 1;
  let pending: Buffer = Buffer.alloc(0);
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
  }
  if (pending.length > 0) opts.onPartial?.(pending.length);
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
