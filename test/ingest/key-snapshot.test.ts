import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { KeyIndex, pairHash } from '../../src/ingest/key-index.ts';
import { prng, testSeed } from '../support/seed.ts';
import { KEY_SNAPSHOT_FILE, readKeySnapshot, writeKeySnapshot } from '../../src/ingest/key-snapshot.ts';
import { mountSmallDisk } from '../support/small-disk.ts';

describe('dedupe index snapshot', () => {
  test('regression (outside test, tenth round): a disk that fills while the snapshot is written is an error, and the last whole snapshot stays', async () => {
    const disk = mountSmallDisk(1 << 20);
    try {
      const small = new KeyIndex();
      for (let seq = 1; seq <= 10; seq++) small.add(pairHash('t', `k${seq}`), seq);
      await writeKeySnapshot(disk.dir, small, 10);
      const big = new KeyIndex();
      for (let seq = 1; seq <= 20_000; seq++) big.add(pairHash('t', `k${seq}`), seq);
      // Room for part of its 320,032 bytes: writev writes what fits and says so without an error.
      disk.fill(100_000);
      await expect(writeKeySnapshot(disk.dir, big, 20_000)).rejects.toThrow(/ENOSPC|no space/i);
      const kept = await readKeySnapshot(disk.dir, 20_000);
      if (typeof kept === 'string') throw new Error(kept);
      expect(kept.through).toBe(10);
      expect(kept.seqs.length).toBe(10);
      expect(readdirSync(disk.dir).sort()).toEqual([KEY_SNAPSHOT_FILE, 'filler']);
    } finally {
      disk.unmount();
    }
  });


  const dir = mkdtempSync(join(tmpdir(), 'sluice-snap-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('round-trips a wrapped ring; refuses a file ahead of the journal or out of seq order', async () => {
    const index = new KeyIndex(16);
    // Adds and evictions past the ring's size, so the entries wrap around its end.
    for (let seq = 1; seq <= 40; seq++) {
      index.add(pairHash('t', `k${seq}`), seq);
      if (index.size > 12) index.evictOldest();
    }
    expect(index.chunks().length).toBe(2);
    expect(await writeKeySnapshot(dir, index, 40)).toBe(32 + 12 * 16);
    const snap = await readKeySnapshot(dir, 40);
    if (typeof snap === 'string') throw new Error(snap);
    expect(snap.through).toBe(40);
    expect([...snap.seqs]).toEqual(Array.from({ length: 12 }, (_, i) => 29 + i));
    const loaded = new KeyIndex();
    loaded.load(snap.lo, snap.hi, snap.seqs);
    for (let seq = 29; seq <= 40; seq++) expect(loaded.get(pairHash('t', `k${seq}`))).toBe(seq);
    expect(loaded.get(pairHash('t', 'k28'))).toBeUndefined();

    expect(await readKeySnapshot(dir, 39)).toBe('snapshot through seq 40, but the journal ends at 39');
    const bytes = readFileSync(join(dir, KEY_SNAPSHOT_FILE));
    // The first seq (after header, low and high halves) set above the second.
    bytes.writeDoubleLE(35, 32 + 8 * 12);
    writeFileSync(join(dir, KEY_SNAPSHOT_FILE), bytes);
    expect(await readKeySnapshot(dir, 40)).toMatch(/^checksum mismatch: /);
    // Sealed again, as a writer with that bug would have: the seq checks still refuse it.
    writeFileSync(join(dir, KEY_SNAPSHOT_FILE), reseal(bytes));
    expect(await readKeySnapshot(dir, 40)).toBe('entries out of seq order at seq 30');
    bytes.writeDoubleLE(29.5, 32 + 8 * 12);
    writeFileSync(join(dir, KEY_SNAPSHOT_FILE), reseal(bytes));
    expect(await readKeySnapshot(dir, 40)).toBe('entry with seq 29.5, not a positive integer');
    writeFileSync(join(dir, KEY_SNAPSHOT_FILE), 'not a snapshot at all, but long enough');
    expect(await readKeySnapshot(dir, 40)).toBe('not a dedupe index snapshot');
  });

  test('refuses a snapshot with a zeroed region or any single flipped bit', async () => {
    const random = prng(testSeed('snapshot bit flips'));
    const index = new KeyIndex();
    for (let seq = 1; seq <= 5000; seq++) index.add(pairHash('t', `k${seq}`), seq);
    await writeKeySnapshot(dir, index, 5000);
    const good = readFileSync(join(dir, KEY_SNAPSHOT_FILE));
    expect(typeof (await readKeySnapshot(dir, 5000))).toBe('object');

    // A zeroed block inside the high hash halves: sizes and seqs still look right.
    const zeroed = Buffer.from(good);
    zeroed.fill(0, 32 + 4 * 5000 + 1000, 32 + 4 * 5000 + 5000);
    writeFileSync(join(dir, KEY_SNAPSHOT_FILE), zeroed);
    expect(await readKeySnapshot(dir, 5000)).toMatch(/^checksum mismatch: /);

    // Every bit of the header and some of each array, flipped alone.
    const bits = [...Array.from({ length: 32 * 8 }, (_, i) => i), ...Array.from({ length: 300 }, () => 32 * 8 + Math.floor(random() * (good.length - 32) * 8))];
    for (const bit of bits) {
      const flipped = Buffer.from(good);
      flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      writeFileSync(join(dir, KEY_SNAPSHOT_FILE), flipped);
      const got = await readKeySnapshot(dir, 5000);
      if (typeof got !== 'string') throw new Error(`bit ${bit} flipped, snapshot accepted`);
    }
  });
});

function reseal(bytes: Buffer): Buffer {
  bytes.writeUInt32LE(0, 24);
  bytes.writeUInt32LE(crc32(bytes), 24);
  return bytes;
}
