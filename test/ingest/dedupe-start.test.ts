import { expect, test } from 'bun:test';
import { keptOfSnapshot } from '../../src/ingest/dedupe-start.ts';
import { KeyIndex } from '../../src/ingest/key-index.ts';
import { RecentKeys } from '../../src/ingest/recent-keys.ts';
import { prng, testSeed } from '../support/seed.ts';

function snapshotOf(seqs: number[], through: number) {
  return {
    through,
    lo: Uint32Array.from(seqs, (s) => s * 7919),
    hi: Uint32Array.from(seqs, (s) => s * 104729),
    seqs: Float64Array.from(seqs),
  };
}

test('a snapshot of more forwarded keys than SLUICE_RECENT_KEYS keeps: only the newest are loaded, every unforwarded one stays', () => {
  // 4,000 keys, forwarded through 3,900, 100 kept: the 100 unforwarded and the 100 forwarded before them.
  const seqs = Array.from({ length: 4000 }, (_, i) => i + 1);
  const kept = keptOfSnapshot(snapshotOf(seqs, 4000), 3900, 100);
  expect([...kept.seqs]).toEqual(seqs.slice(-200));
  expect(kept.lo[0]).toBe(3801 * 7919);
  // Nothing forwarded: all stay, however small the keep window.
  expect(keptOfSnapshot(snapshotOf(seqs, 4000), 0, 10).seqs.length).toBe(4000);
  // Within the window: the snapshot as it is.
  const small = snapshotOf(seqs.slice(0, 50), 50);
  expect(keptOfSnapshot(small, 50, 100)).toBe(small);
});

test('keptOfSnapshot keeps what the index keeps after loading the whole snapshot and evicting (random snapshots)', () => {
  const seed = testSeed('kept of snapshot');
  const random = prng(seed);
  for (let round = 0; round < 300; round++) {
    // Ascending seqs with gaps (keys evicted or repeated), a checkpoint anywhere, any keep window.
    const seqs: number[] = [];
    let seq = 0;
    const n = Math.floor(random() * 400);
    for (let i = 0; i < n; i++) seqs.push((seq += 1 + Math.floor(random() * 3)));
    const through = seq + Math.floor(random() * 5);
    const forwarded = Math.floor(random() * (through + 1));
    const keep = Math.floor(random() * 300);
    const snap = snapshotOf(seqs, through);

    const whole = new RecentKeys(keep, 'n', new KeyIndex());
    whole.index.load(snap.lo, snap.hi, snap.seqs);
    whole.loaded(through);
    whole.forwarded(forwarded);
    const expected = whole.index.chunks().flatMap((c) => [...c.seqs]);

    const kept = keptOfSnapshot(snap, forwarded, keep);
    expect({ seed, round, seqs: [...kept.seqs] }).toEqual({ seed, round, seqs: expected });
  }
});
