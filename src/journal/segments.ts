import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { compareSegments, parseSegmentFileName, segmentFileName, type SegmentName } from './segment-name.ts';

export interface SegmentFile extends SegmentName {
  path: string;
  bytes: number;
  mtimeMs: number;
}

/** Segments of a node directory in seq order, with sizes. */
export async function listSegments(nodeDir: string): Promise<SegmentFile[]> {
  const names = (await readdir(nodeDir)).map(parseSegmentFileName).filter((s) => s !== undefined);
  const files = await Promise.all(
    names.map(async (s) => {
      const st = await stat(join(nodeDir, s.file));
      return { ...s, path: join(nodeDir, s.file), bytes: st.size, mtimeMs: st.mtimeMs };
    }),
  );
  return files.sort(compareSegments);
}

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

/**
 * Gzips a closed segment: temp file, fsync, rename, fsync the directory, and only then remove the
 * original. A crash at any step leaves the plain or the gzipped segment whole (see tidySegments).
 */
export async function compressSegment(nodeDir: string, firstSeq: number): Promise<{ bytesIn: number; bytesOut: number }> {
  const plain = join(nodeDir, segmentFileName(firstSeq));
  const gz = join(nodeDir, segmentFileName(firstSeq, true));
  const tmp = `${gz}.tmp`;
  await pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(tmp));
  const handle = await open(tmp, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, gz);
  await syncDir(nodeDir);
  const [bytesIn, bytesOut] = [(await stat(plain)).size, (await stat(gz)).size];
  await unlink(plain);
  await syncDir(nodeDir);
  return { bytesIn, bytesOut };
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
