import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { writeAll } from '../write-all.ts';
import type { KeyIndex } from './key-index.ts';

/** In the node's journal directory, beside checkpoint.json; the journal's own listings ignore it. */
export const KEY_SNAPSHOT_FILE = 'dedupe-index.bin';
// 02 added the CRC32: a 01 file (without one) is refused once, and the journal read instead.
const MAGIC = 'SLKEYS02';
const HEADER_BYTES = 32;
const CRC_AT = 24;

export interface KeySnapshot {
  /** Every journaled write up to this seq is in the snapshot or was forwarded. */
  through: number;
  lo: Uint32Array;
  hi: Uint32Array;
  seqs: Float64Array;
}

/**
 * Writes the journaled keys of the dedupe index, so the next start loads them instead of reading
 * the journal: `SLKEYS02`, entry count and `through` (float64 LE), the CRC32 of the whole file with
 * these 4 bytes zero (uint32 LE), 4 bytes reserved, then the low hash halves, the high ones (uint32
 * LE) and the seqs (float64 LE), oldest first. Written to a temp file, fsynced and renamed over the
 * old one: a crash leaves the old snapshot or the new, never a mix.
 * The entries are copied first, since the index keeps changing while the file is written.
 */
export async function writeKeySnapshot(nodeDir: string, index: KeyIndex, through: number): Promise<number> {
  const chunks = index.chunks();
  const n = chunks.reduce((sum, c) => sum + c.seqs.length, 0);
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeDoubleLE(n, 8);
  header.writeDoubleLE(through, 16);
  const parts: Uint8Array[] = [header];
  for (const field of ['lo', 'hi', 'seqs'] as const) {
    for (const c of chunks) parts.push(new Uint8Array(c[field].slice().buffer));
  }
  header.writeUInt32LE(parts.reduce((crc, p) => crc32(p, crc), 0), CRC_AT);
  const path = join(nodeDir, KEY_SNAPSHOT_FILE);
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w');
  try {
    // Each part whole, in turn: a writev that wrote short on a filling disk said so without an error.
    let at = 0;
    for (const part of parts) {
      await writeAll(handle, part, at);
      at += part.byteLength;
    }
    await handle.sync();
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  return HEADER_BYTES + n * 16;
}

/**
 * The snapshot of this node's dedupe index, or a reason it cannot be used (missing, truncated,
 * damaged: checksum or seqs, or ahead of the journal: a journal restored or reset under it).
 */
export async function readKeySnapshot(nodeDir: string, journalThrough: number): Promise<KeySnapshot | string> {
  const file = Bun.file(join(nodeDir, KEY_SNAPSHOT_FILE));
  if (!(await file.exists())) return 'no snapshot';
  // Views over the one buffer read: no copy of what may be tens of MiB.
  const buf = await file.arrayBuffer();
  const bytes = Buffer.from(buf);
  if (bytes.length < HEADER_BYTES || bytes.toString('latin1', 0, 8) !== MAGIC) return 'not a dedupe index snapshot';
  const n = bytes.readDoubleLE(8);
  const through = bytes.readDoubleLE(16);
  if (!Number.isSafeInteger(n) || n < 0 || bytes.length !== HEADER_BYTES + n * 16) return `truncated: ${bytes.length} bytes for ${n} entries`;
  const stored = bytes.readUInt32LE(CRC_AT);
  bytes.writeUInt32LE(0, CRC_AT);
  const actual = crc32(bytes);
  if (actual !== stored) return `checksum mismatch: ${actual.toString(16)} computed, ${stored.toString(16)} stored`;
  if (!Number.isSafeInteger(through) || through < 0) return `bad through seq ${through}`;
  if (through > journalThrough) return `snapshot through seq ${through}, but the journal ends at ${journalThrough}`;
  const snap = {
    through,
    lo: new Uint32Array(buf, HEADER_BYTES, n),
    hi: new Uint32Array(buf, HEADER_BYTES + 4 * n, n),
    seqs: new Float64Array(buf, HEADER_BYTES + 8 * n, n),
  };
  let previous = 0;
  for (const seq of snap.seqs) {
    if (!Number.isSafeInteger(seq) || seq <= 0) return `entry with seq ${seq}, not a positive integer`;
    if (!(seq > previous && seq <= through)) return `entries out of seq order at seq ${seq}`;
    previous = seq;
  }
  return snap;
}

/** A snapshot that no longer matches the journal must not be loaded by a later start either. */
export async function removeKeySnapshot(nodeDir: string): Promise<void> {
  await rm(join(nodeDir, KEY_SNAPSHOT_FILE), { force: true });
}
