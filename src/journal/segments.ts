import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { leadingSeq } from './entry.ts';
import { compareSegments, parseSegmentFileName, segmentFileName, type SegmentName } from './segment-name.ts';

export interface SegmentFile extends SegmentName {
  path: string;
  bytes: number;
  mtimeMs: number;
}

/** Segments of a node directory in seq order, with sizes. */
export async function listSegments(nodeDir: string): Promise<SegmentFile[]> {
  for (let attempt = 1; ; attempt++) {
    const names = (await readdir(nodeDir)).map(parseSegmentFileName).filter((s) => s !== undefined);
    try {
      const files = await Promise.all(
        names.map(async (s) => {
          const st = await stat(join(nodeDir, s.file));
          return { ...s, path: join(nodeDir, s.file), bytes: st.size, mtimeMs: st.mtimeMs };
        }),
      );
      return files.sort(compareSegments);
    } catch (err) {
      // Maintenance gzipped (renamed, then unlinked) or retired a segment between the readdir and its
      // stat: the directory changed, so list it again. Leaving the file out instead would show a hole.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= LIST_ATTEMPTS) throw err;
    }
  }
}

/** A directory that changes under every listing this many times in a row is not a race any more. */
const LIST_ATTEMPTS = 20;

/**
 * Repairs what a crash during compression can leave: a temp file (incomplete: removed) or a segment
 * both plain and gzipped (the .gz was renamed into place only after its fsync, so it is whole: the
 * plain copy goes). Afterwards every seq range is held by exactly one file.
 */
export async function tidySegments(nodeDir: string): Promise<{ removedTemp: string[]; removedPlain: string[] }> {
  const entries = await readdir(nodeDir);
  const removedTemp: string[] = [];
  const removedPlain: string[] = [];
  for (const f of entries) {
    if (f.endsWith('.jsonl.gz.tmp')) {
      await unlink(join(nodeDir, f));
      removedTemp.push(f);
    }
  }
  const set = new Set(entries);
  for (const f of entries) {
    if (f.endsWith('.jsonl') && set.has(`${f}.gz`) && parseSegmentFileName(f) !== undefined) {
      await unlink(join(nodeDir, f));
      removedPlain.push(f);
    }
  }
  if (removedPlain.length > 0 || removedTemp.length > 0) await syncDir(nodeDir);
  return { removedTemp, removedPlain };
}

/** What a segment's lines hold: seq range, count, and whether the seqs run without a hole. */
export interface SeqRange {
  first: number | undefined;
  last: number | undefined;
  lines: number;
  /** The first place the seqs did not run on by one, if any. */
  hole: { after: number; seq: number; line: number } | undefined;
}

export type CompressResult =
  | { ok: true; bytesIn: number; bytesOut: number; range: SeqRange }
  | { ok: false; reason: string; range: SeqRange };

/**
 * Gzips a sealed segment: temp file, fsync, then a check that the gzipped copy inflates to exactly the
 * plain bytes (same length, same SHA-256), that the plain file did not change meanwhile, and that the
 * seqs run from the segment's first seq to `expectedLastSeq` (when known) without a hole. Only then
 * rename, fsync the directory and remove the original. A crash at any step leaves the plain or the
 * gzipped segment whole (see tidySegments); a failed check leaves the plain segment and no temp file.
 */
export async function compressSegment(nodeDir: string, firstSeq: number, expectedLastSeq?: number): Promise<CompressResult> {
  const plain = join(nodeDir, segmentFileName(firstSeq));
  const gz = join(nodeDir, segmentFileName(firstSeq, true));
  const tmp = `${gz}.tmp`;
  const sizeBefore = (await stat(plain)).size;
  const plainHash = createHash('sha256');
  const seqs = new SeqScanner();
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      plainHash.update(chunk);
      seqs.push(chunk);
      done(null, chunk);
    },
  });
  await pipeline(createReadStream(plain), tap, createGzip({ level: 6 }), createWriteStream(tmp));
  const range = seqs.finish();
  const handle = await open(tmp, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  const inflated = createHash('sha256');
  let inflatedBytes = 0;
  for await (const chunk of createReadStream(tmp).pipe(createGunzip())) {
    inflated.update(chunk as Buffer);
    inflatedBytes += (chunk as Buffer).length;
  }
  const sizeAfter = (await stat(plain)).size;
  const reason =
    sizeAfter !== sizeBefore
      ? `the plain segment changed while it was compressed (${sizeBefore} -> ${sizeAfter} bytes)`
      : inflatedBytes !== sizeBefore || inflated.digest('hex') !== plainHash.digest('hex')
        ? `the gzipped copy inflates to ${inflatedBytes} bytes that differ from the ${sizeBefore} plain bytes`
        : rangeProblem(range, firstSeq, expectedLastSeq);
  if (reason !== undefined) {
    await unlink(tmp).catch(() => {});
    return { ok: false, reason, range };
  }
  await rename(tmp, gz);
  await syncDir(nodeDir);
  const bytesOut = (await stat(gz)).size;
  await unlink(plain);
  await syncDir(nodeDir);
  return { ok: true, bytesIn: sizeBefore, bytesOut, range };
}

function rangeProblem(range: SeqRange, firstSeq: number, expectedLastSeq: number | undefined): string | undefined {
  if (range.lines === 0) return expectedLastSeq !== undefined && expectedLastSeq >= firstSeq ? `empty, but seqs ${firstSeq}..${expectedLastSeq} were written to it` : undefined;
  if (range.first !== firstSeq) return `its first seq is ${range.first ?? 'unreadable'}, not ${firstSeq} as its name says`;
  if (range.hole !== undefined) return `seq ${range.hole.seq} follows ${range.hole.after} at line ${range.hole.line}`;
  if (expectedLastSeq !== undefined && range.last !== expectedLastSeq) return `it ends at seq ${range.last ?? '?'}, but seqs through ${expectedLastSeq} were written to it`;
  return undefined;
}

/**
 * Follows the seqs of a stream of journal bytes, line by line, without parsing whole entries: a line
 * starts with `{"seq":N,` (formatEntry writes that field first). Lines that do not are counted but
 * carry no seq (corrupt lines are the forwarder's and `journal verify`'s to report).
 */
export class SeqScanner {
  #range: SeqRange = { first: undefined, last: undefined, lines: 0, hole: undefined };
  #partial = '';
  #afterBadLine = false;

  push(chunk: Buffer): void {
    const text = this.#partial + chunk.toString('latin1');
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      this.#line(text, start);
      start = nl + 1;
    }
    this.#partial = text.slice(start);
  }

  finish(): SeqRange {
    return this.#range;
  }

  #line(text: string, start: number): void {
    const r = this.#range;
    r.lines++;
    const seq = leadingSeq(text.slice(start, start + 40));
    if (seq === undefined) {
      // A corrupt line is kept verbatim and reported by the forwarder and `journal verify`; the seq
      // after it is not a hole of this segment's making.
      this.#afterBadLine = true;
      return;
    }
    if (r.last !== undefined && seq !== r.last + 1 && !this.#afterBadLine && r.hole === undefined) r.hole = { after: r.last, seq, line: r.lines };
    this.#afterBadLine = false;
    r.first ??= seq;
    r.last = seq;
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
