import { describe, expect, test } from 'bun:test';
import { KeyIndex, pairHash, type PairHash } from '../../src/ingest/key-index.ts';
import { ClaimedKeys, RecentKeys } from '../../src/ingest/recent-keys.ts';
import { prng, testSeed } from '../support/seed.ts';

/**
 * Random adds, lookups and evictions against a Map model. Hashes draw their low half from a tiny
 * range, so probe chains are long and crowded and the backward-shift deletion is exercised hard;
 * the ring wraps and the table doubles many times.
 */
function runModel(seed: number, ops: number, loRange: number, swings = false): void {
  const next = prng(seed);
  const index = new KeyIndex(16);
  const model = new Map<string, number>();
  const order: { h: PairHash; seq: number }[] = [];
  let head = 0;
  let seq = 0;
  const fresh = (): PairHash => ({ lo: Math.floor(next() * loRange), hi: Math.floor(next() * 2 ** 32) });
  const id = (h: PairHash): string => `${h.lo}:${h.hi}`;
  for (let op = 0; op < ops; op++) {
    // With swings, every other 3,000 operations mostly evict: the index grows, then drains and shrinks.
    const draining = swings && Math.floor(op / 3_000) % 2 === 1;
    const r = draining ? (next() < 0.15 ? next() * 0.8 : 0.8 + next() * 0.2) : next();
    if (r < 0.5) {
      // Sometimes a hash already held: it keeps its first seq.
      const h = r < 0.05 && order.length > head ? (order[head + Math.floor(next() * (order.length - head))]?.h ?? fresh()) : fresh();
      seq += 1 + Math.floor(next() * 3);
      const added = index.add(h, seq);
      expect(added).toBe(!model.has(id(h)));
      if (added) {
        model.set(id(h), seq);
        order.push({ h, seq });
      }
    } else if (r < 0.8) {
      const held = order.length > head && next() < 0.7 ? order[head + Math.floor(next() * (order.length - head))]?.h : undefined;
      const h = held ?? fresh();
      expect(index.get(h)).toBe(model.get(id(h)));
    } else if (order.length > head) {
      const oldest = order[head++];
      expect(index.oldestSeq).toBe(oldest?.seq);
      index.evictOldest();
      if (oldest !== undefined) model.delete(id(oldest.h));
    }
    expect(index.size).toBe(model.size);
  }
  for (const [key, s] of model) {
    const [lo, hi] = key.split(':').map(Number);
    expect(index.get({ lo: lo ?? 0, hi: hi ?? 0 })).toBe(s);
  }
  // What a snapshot holds loads into a fresh index as the same content.
  const copy = new KeyIndex();
  const all = index.chunks();
  const joined = (f: 'lo' | 'hi'): Uint32Array => Uint32Array.from(all.flatMap((c) => [...c[f]]));
  copy.load(joined('lo'), joined('hi'), Float64Array.from(all.flatMap((c) => [...c.seqs])));
  expect(copy.size).toBe(model.size);
  for (const { h, seq: s } of order.slice(head)) expect(copy.get(h)).toBe(s);
}

describe('KeyIndex', () => {
  test('matches a Map under random adds, lookups and evictions, crowded probe chains included', () => {
    const seed = testSeed('key-index');
    for (const [i, loRange] of [8, 64, 2 ** 32].entries()) runModel(seed + i, 20_000, loRange);
    // A fixed seed as well, so CI always runs one known schedule.
    runModel(7, 20_000, 16);
  });

  test('matches a Map as it grows, drains and shrinks again, over and over', () => {
    const seed = testSeed('key-index-swings');
    for (const [i, loRange] of [8, 2 ** 32].entries()) runModel(seed + i, 30_000, loRange, true);
  });

  test('a drained backlog gives its memory back, down to the first capacity, and keeps what is left', () => {
    const index = new KeyIndex();
    const n = 1 << 17;
    for (let i = 1; i <= n; i++) index.add(pairHash('t', `k${i}`), i);
    expect(index.bytes).toBe(24 * n);
    while (index.size > 1_000) index.evictOldest();
    // 4,096 entries' arrays (the first capacity), not 131,072.
    expect(index.bytes).toBe(24 * 4_096);
    for (let i = n - 999; i <= n; i++) expect(index.get(pairHash('t', `k${i}`))).toBe(i);
    expect(index.get(pairHash('t', `k${n - 1_000}`))).toBeUndefined();
    expect(index.oldestSeq).toBe(n - 999);
    // It grows again as before.
    for (let i = n + 1; i <= n + 10_000; i++) index.add(pairHash('t', `k${i}`), i);
    expect(index.size).toBe(11_000);
    expect(index.get(pairHash('t', `k${n + 10_000}`))).toBe(n + 10_000);
  });

  test('pairHash gives the 64-bit wyhash of the pair as its 32-bit halves, as snapshots store them', () => {
    for (const [tenant, key] of [['acme', 'k-1'], ['', ''], ['t', 'é\u0000\ud800'], ['bench', 'x'.repeat(300)]] as const) {
      const h = Bun.hash.wyhash(`${tenant}\u0000${key}`);
      expect(pairHash(tenant, key)).toEqual({ lo: Number(h & 0xffffffffn), hi: Number(h >> 32n) });
    }
  });

  test('costs 24 bytes a key at capacity and at most 48 after a doubling', () => {
    const index = new KeyIndex();
    for (let i = 1; i <= 1 << 20; i++) index.add(pairHash('t', `k${i}`), i);
    expect(index.bytes / index.size).toBe(24);
    index.add(pairHash('t', 'one more'), (1 << 20) + 1);
    expect(index.bytes / index.size).toBeLessThan(48);
  });
});

describe('RecentKeys', () => {
  test('keeps every unforwarded key and at most keepForwarded forwarded ones, oldest evicted first', async () => {
    const keys = new RecentKeys(3, 'n');
    for (let seq = 1; seq <= 10; seq++) keys.journaled('t', `k${seq}`, seq);
    keys.forwarded(6);
    const pending = { ids: () => Promise.resolve([]), indexOf: () => 0 };
    // k1..k3 aged out; k4..k6 are the 3 forwarded kept; k7..k10 are unforwarded.
    for (let seq = 1; seq <= 3; seq++) expect(keys.has('t', `k${seq}`)).toBe(false);
    for (let seq = 4; seq <= 10; seq++) expect(await keys.claim('t', `k${seq}`, pending, new ClaimedKeys())).toBe(`n:${seq}`);
    keys.forwarded(10);
    expect(keys.size).toBe(3);
    expect(keys.has('t', 'k10')).toBe(true);
    expect(keys.has('t', 'k7')).toBe(false);
  });

  test('a key being journaled is a duplicate at once; a released one is fresh again', async () => {
    const keys = new RecentKeys(0, 'n');
    const ids = Promise.resolve(['n:1', 'n:2']);
    // A batch whose fresh writes are x and a, in that order: a repeat of a is answered with the second id.
    const batch = { ids: () => ids, indexOf: (key: string) => ['t\u0000x', 't\u0000a'].indexOf(key) };
    const claimed = new ClaimedKeys();
    expect(keys.claim('t', 'a', batch, claimed)).toBeUndefined();
    expect(await keys.claim('t', 'a', batch, claimed)).toBe('n:2');
    // Only the fresh claim is handed back, joined and hashed.
    const hash = pairHash('t', 'a');
    expect({ keys: claimed.keys, lo: claimed.lo, hi: claimed.hi }).toEqual({ keys: ['t\u0000a'], lo: [hash.lo], hi: [hash.hi] });
    keys.releaseClaim(claimed, 0);
    expect(keys.has('t', 'a')).toBe(false);
    expect(keys.claim('t', 'a', batch, claimed)).toBeUndefined();
    keys.journaledClaim(claimed, 1, 7);
    expect(await keys.claim('t', 'a', batch, new ClaimedKeys())).toBe('n:7');
    expect(keys.through).toBe(7);
  });
});

describe('RecentKeys under random journaling and forwarding', () => {
  test('never drops an unforwarded key, and keeps the newest keepForwarded forwarded ones', () => {
    // A fixed seed, so CI always runs one known schedule, and a fresh one.
    for (const seed of [11, testSeed('recent-keys')]) recentKeysModel(seed);
  });
});

function recentKeysModel(seed: number): void {
  const next = prng(seed);
  const keep = 50;
  const keys = new RecentKeys(keep, 'n');
  const journaled: number[] = [];
  let seq = 0;
  let forwarded = 0;
  for (let op = 0; op < 20_000; op++) {
    if (next() < 0.7) {
      // Seqs with gaps, as other writers' lines or bad lines leave them.
      seq += 1 + Math.floor(next() * 2);
      keys.journaled('t', `k${seq}`, seq);
      journaled.push(seq);
    } else {
      forwarded = Math.min(seq, forwarded + Math.floor(next() * 40));
      keys.forwarded(forwarded);
    }
    if (op % 500 === 0 || op === 19_999) {
      const unforwarded = journaled.filter((s) => s > forwarded);
      for (const s of unforwarded) expect(keys.has('t', `k${s}`)).toBe(true);
      const newestForwarded = journaled.filter((s) => s <= forwarded).slice(-keep);
      for (const s of newestForwarded) expect(keys.has('t', `k${s}`)).toBe(true);
      // Bounded: the unforwarded, keepForwarded more, and at most the seq gaps among the unforwarded.
      expect(keys.size).toBeLessThanOrEqual(seq - forwarded + keep);
    }
  }
}
