import { open, readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';

export interface TailRecovery {
  /** Seq of the last whole line, undefined for an empty segment. */
  lastSeq: number | undefined;
  /** Bytes cut off the end: a torn line (no newline, or not parsable JSON with a seq). */
  truncatedBytes: number;
}

const CHUNK = 1 << 20;

/**
 * Finds the last whole line of the newest segment and truncates a torn one after it, so that the next
 * append starts on a line boundary. Gzipped segments were closed whole and are only read.
 */
export async function recoverTail(path: string, gzipped: boolean): Promise<TailRecovery> {
  if (gzipped) {
    const text = gunzipSync(await readFile(path)).toString('utf8');
    const lines = text.split('\n').filter((l) => l.length > 0);
    return { lastSeq: seqOf(lines.at(-1) ?? ''), truncatedBytes: 0 };
  }
  const handle = await open(path, 'r+');
  try {
    const size = (await handle.stat()).size;
    let end = size;
    const last = await lastLine(handle, end);
    if (last !== undefined && !(last.terminated && seqOf(last.text) !== undefined)) {
      end = last.start;
      await handle.truncate(end);
    }
    return { lastSeq: await lastParsableSeq(handle, end), truncatedBytes: size - end };
  } finally {
    await handle.close();
  }
}

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
