import { open, readFile } from 'node:fs/promises';
import { constants, gunzipSync } from 'node:zlib';

export interface TailRecovery {
  /** Seq of the last whole line, undefined for an empty segment. */
  lastSeq: number | undefined;
  /**
   * Bytes cut off the end: a torn line (no newline, or not parsable JSON with a seq), and anything but
   * zeros after the first NUL byte (the rest of a write a crash interrupted).
   */
  truncatedBytes: number;
  /** Zeros cut off the end: the unwritten part of a preallocated segment, which is no damage. */
  zeroBytes: number;
  /** Why a gzipped segment could not be read to its end (truncated, corrupt), if so. */
  unreadable?: string;
}

const CHUNK = 1 << 20;

/**
 * Finds the last whole line of the newest segment and truncates a torn one after it, so that the next
 * append starts on a line boundary. Gzipped segments were closed whole and are only read.
 */
export async function recoverTail(path: string, gzipped: boolean): Promise<TailRecovery> {
  if (gzipped) {
    const raw = await readFile(path);
    let unreadable: string | undefined;
    let text = '';
    try {
      text = gunzipSync(raw).toString('utf8');
    } catch (err) {
      unreadable = (err as Error).message;
      // A truncated file still gives what it holds up to the cut; a corrupt one may give nothing.
      text = safeGunzipPrefix(raw);
    }
    const lines = text.split('\n');
    lines.pop();
    const whole = lines.filter((l) => l.length > 0);
    let lastSeq: number | undefined;
    for (let i = whole.length - 1; i >= 0 && lastSeq === undefined; i--) lastSeq = seqOf(whole[i] ?? '');
    return unreadable === undefined ? { lastSeq, truncatedBytes: 0, zeroBytes: 0 } : { lastSeq, truncatedBytes: 0, zeroBytes: 0, unreadable };
  }
  const handle = await open(path, 'r+');
  try {
    const size = (await handle.stat()).size;
    const content = await contentEnd(handle, size);
    let end = content.end;
    const last = await lastLine(handle, end);
    if (last !== undefined && !(last.terminated && seqOf(last.text) !== undefined)) end = last.start;
    if (end < size) await handle.truncate(end);
    const zeroBytes = content.zerosAfter ? size - content.end : 0;
    return { lastSeq: await lastParsableSeq(handle, end), truncatedBytes: size - end - zeroBytes, zeroBytes };
  } finally {
    await handle.close();
  }
}

/**
 * Where a plain segment's written part ends: at its first NUL byte, which no line holds (JSON allows
 * none outside strings, nor raw in them). Writes go in order, each after the last returned, so past
 * the first NUL lies only what the write in flight at a crash did not finish (a preallocated
 * segment's zeros, or its blocks that reached the disk out of order). `zerosAfter`: only zeros follow.
 */
async function contentEnd(handle: Awaited<ReturnType<typeof open>>, size: number): Promise<{ end: number; zerosAfter: boolean }> {
  const buf = Buffer.alloc(Math.min(CHUNK, size));
  let end: number | undefined;
  for (let pos = 0; pos < size; ) {
    const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    const chunk = buf.subarray(0, bytesRead);
    let from = 0;
    if (end === undefined) {
      const nul = chunk.indexOf(0);
      if (nul >= 0) {
        end = pos + nul;
        from = nul;
      }
    }
    if (end !== undefined && !isZeros(chunk.subarray(from))) return { end, zerosAfter: false };
    pos += bytesRead;
  }
  return { end: end ?? size, zerosAfter: true };
}

function isZeros(b: Buffer): boolean {
  return b.length === 0 || (b[0] === 0 && b.equals(ZEROS.subarray(0, b.length)));
}

const ZEROS = Buffer.alloc(CHUNK);

/** The seq of the last parsable line of a plain segment, read from its end; nothing is changed. */
export async function lastSeqOf(path: string): Promise<number | undefined> {
  const handle = await open(path, 'r');
  try {
    return await lastParsableSeq(handle, (await handle.stat()).size);
  } finally {
    await handle.close();
  }
}

// Bad lines before the tail are not torn writes: they stay in place for `journal verify` to report.
async function lastParsableSeq(handle: Awaited<ReturnType<typeof open>>, end: number): Promise<number | undefined> {
  for (let pos = end; ; ) {
    const line = await lastLine(handle, pos);
    if (line === undefined) return undefined;
    const seq = seqOf(line.text);
    if (seq !== undefined) return seq;
    pos = line.start;
  }
}

interface Line {
  text: string;
  start: number;
  terminated: boolean;
}

/** The last line of bytes [0, end): its text without the newline and where it starts. */
async function lastLine(handle: Awaited<ReturnType<typeof open>>, end: number): Promise<Line | undefined> {
  if (end === 0) return undefined;
  const chunks: Buffer[] = [];
  let pos = end;
  let terminated: boolean | undefined;
  for (;;) {
    const from = Math.max(0, pos - CHUNK);
    const buf = Buffer.alloc(pos - from);
    await handle.read(buf, 0, buf.length, from);
    let searchEnd = buf.length;
    if (terminated === undefined) {
      terminated = buf[buf.length - 1] === 0x0a;
      if (terminated) searchEnd -= 1;
    }
    const nl = buf.lastIndexOf(0x0a, searchEnd - 1);
    if (nl >= 0 || from === 0) {
      const start = nl >= 0 ? from + nl + 1 : 0;
      chunks.unshift(buf.subarray(nl + 1, searchEnd));
      return { text: Buffer.concat(chunks).toString('utf8'), start, terminated };
    }
    chunks.unshift(buf.subarray(0, searchEnd));
    pos = from;
  }
}

function seqOf(line: string): number | undefined {
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed === 'object' && parsed !== null && 'seq' in parsed) {
      const seq = (parsed as { seq: unknown }).seq;
      if (typeof seq === 'number' && Number.isSafeInteger(seq)) return seq;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function safeGunzipPrefix(raw: Buffer): string {
  try {
    return gunzipSync(raw, { finishFlush: constants.Z_SYNC_FLUSH }).toString('utf8');
  } catch {
    return '';
  }
}
