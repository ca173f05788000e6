import { pairKey } from '../core/record.ts';
import { SluiceError } from '../errors.ts';

/**
 * The journaled keys of the dedupe index: (tenant, dedupe key) pairs held as 64-bit hashes with the
 * seq of their write, in seq order, so the oldest can be evicted once forwarded. Typed arrays only:
 * a ring of entries (two 32-bit hash halves and a seq, 16 bytes) and an open-addressed table of ring
 * positions (4 bytes, load at most one half, so 8 bytes an entry), both doubled as the index grows.
 * That is 24 bytes a key at capacity and 48 just after a doubling, where a Map of strings held ~330.
 *
 * Two different pairs share a hash with odds of 2⁻⁶⁴ per comparison: a new write's key is taken for
 * one of n held keys with odds n/2⁶⁴ (3 million keys: 1.6·10⁻¹³ a write), and is then answered as a
 * duplicate of it. Only 32-bit halves are stored, so loading a snapshot touches no BigInt.
 */
export class KeyIndex {
  #lo: Uint32Array;
  #hi: Uint32Array;
  #seqs: Float64Array;
  /** Ring position + 1 of the entry a slot holds; 0 is an empty slot. */
  #table: Int32Array;
  /** Absolute positions: entries live in [#head, #tail), at `position & (capacity - 1)` in the ring. */
  #head = 0;
  #tail = 0;

  /** The capacity it was made with: it never shrinks below. */
  readonly #minCapacity: number;

  constructor(capacity = 1 << 12) {
    const cap = 2 ** Math.ceil(Math.log2(Math.max(16, capacity)));
    this.#minCapacity = cap;
    this.#lo = new Uint32Array(cap);
    this.#hi = new Uint32Array(cap);
    this.#seqs = new Float64Array(cap);
    this.#table = new Int32Array(cap * 2);
  }

  get size(): number {
    return this.#tail - this.#head;
  }

  /** Bytes the typed arrays hold (the index's whole memory but for a few fields). */
  get bytes(): number {
    return this.#lo.byteLength + this.#hi.byteLength + this.#seqs.byteLength + this.#table.byteLength;
  }

  /** Seq of the oldest entry, or undefined when empty. */
  get oldestSeq(): number | undefined {
    return this.size === 0 ? undefined : this.#seqs[this.#head & (this.#seqs.length - 1)];
  }

  /** The seq stored for this hash, or undefined. */
  get(hash: PairHash): number | undefined {
    const slot = this.#find(hash.lo, hash.hi);
    if (slot < 0) return undefined;
    return this.#seqs[(this.#table[slot] ?? 0) - 1];
  }

  /**
   * Adds an entry; seqs must come in ascending order. A hash already held keeps its first seq (the
   * original write), and false is returned.
   */
  add(hash: PairHash, seq: number): boolean {
    return this.addHalves(hash.lo, hash.hi, seq);
  }

  /** `add` of a hash given as its two halves. */
  addHalves(lo: number, hi: number, seq: number): boolean {
    if (this.#find(lo, hi) >= 0) return false;
    this.#reserve(this.size + 1);
    const mask = this.#seqs.length - 1;
    const pos = this.#tail & mask;
    this.#lo[pos] = lo;
    this.#hi[pos] = hi;
    this.#seqs[pos] = seq;
    this.#tail++;
    this.#place(lo, pos + 1);
    return true;
  }

  /**
   * Removes the oldest entry. An index down to an eighth of its capacity is rebuilt at a quarter of it
   * (never below the first capacity): a backlog drained gives its memory back, and the index is then
   * half full, so it neither grows nor shrinks again soon.
   */
  evictOldest(): void {
    if (this.size === 0) return;
    const mask = this.#seqs.length - 1;
    const pos = this.#head & mask;
    const slot = this.#slotOf(pos);
    if (slot >= 0) this.#deleteSlot(slot);
    this.#head++;
    const cap = this.#seqs.length;
    if (cap > this.#minCapacity && this.size <= cap / 8) this.#rebuild(Math.max(this.#minCapacity, cap / 4));
  }

  /** Entries oldest first, as views over the ring (two when it wraps), for a snapshot. */
  chunks(): { lo: Uint32Array; hi: Uint32Array; seqs: Float64Array }[] {
    const cap = this.#seqs.length;
    const from = this.#head & (cap - 1);
    const n = this.size;
    const first = Math.min(n, cap - from);
    const views = [{ lo: this.#lo.subarray(from, from + first), hi: this.#hi.subarray(from, from + first), seqs: this.#seqs.subarray(from, from + first) }];
    if (first < n) views.push({ lo: this.#lo.subarray(0, n - first), hi: this.#hi.subarray(0, n - first), seqs: this.#seqs.subarray(0, n - first) });
    return views;
  }

  /**
   * Adds entries in bulk (from a snapshot), oldest first, into an empty index. They come from an
   * index, so their hashes are distinct: no lookup before each insert.
   */
  load(lo: Uint32Array, hi: Uint32Array, seqs: Float64Array): void {
    if (this.size > 0) throw new SluiceError('internal', 'KeyIndex.load needs an empty index');
    this.#reserve(seqs.length);
    this.#head = 0;
    this.#tail = seqs.length;
    this.#lo.set(lo);
    this.#hi.set(hi);
    this.#seqs.set(seqs);
    for (let pos = 0; pos < seqs.length; pos++) this.#place(lo[pos] ?? 0, pos + 1);
  }

  #find(lo: number, hi: number): number {
    const table = this.#table;
    const mask = table.length - 1;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      const v = table[i] ?? 0;
      if (v === 0) return -1;
      if (this.#lo[v - 1] === lo && this.#hi[v - 1] === hi) return i;
    }
  }

  #slotOf(pos: number): number {
    const table = this.#table;
    const mask = table.length - 1;
    for (let i = (this.#lo[pos] ?? 0) & mask; ; i = (i + 1) & mask) {
      const v = table[i] ?? 0;
      if (v === 0) return -1;
      if (v === pos + 1) return i;
    }
  }

  #place(lo: number, value: number): void {
    const table = this.#table;
    const mask = table.length - 1;
    let i = lo & mask;
    while ((table[i] ?? 0) !== 0) i = (i + 1) & mask;
    table[i] = value;
  }

  /** Linear-probing deletion by backward shift: no tombstones, so probes stay short under churn. */
  #deleteSlot(slot: number): void {
    const table = this.#table;
    const mask = table.length - 1;
    let hole = slot;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const v = table[j] ?? 0;
      if (v === 0) break;
      const home = (this.#lo[v - 1] ?? 0) & mask;
      // Move the entry at j into the hole unless its home lies cyclically in (hole, j].
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!between) {
        table[hole] = v;
        hole = j;
      }
    }
    table[hole] = 0;
  }

  #reserve(entries: number): void {
    let cap = this.#seqs.length;
    if (entries <= cap) return;
    while (cap < entries) cap *= 2;
    this.#rebuild(cap);
  }

  /** Moves the entries, oldest first, into arrays of `cap` entries (a power of two, at least the size). */
  #rebuild(cap: number): void {
    const old = this.chunks();
    const n = this.size;
    this.#lo = new Uint32Array(cap);
    this.#hi = new Uint32Array(cap);
    this.#seqs = new Float64Array(cap);
    this.#table = new Int32Array(cap * 2);
    let at = 0;
    for (const c of old) {
      this.#lo.set(c.lo, at);
      this.#hi.set(c.hi, at);
      this.#seqs.set(c.seqs, at);
      at += c.seqs.length;
    }
    this.#head = 0;
    this.#tail = n;
    for (let pos = 0; pos < n; pos++) this.#place(this.#lo[pos] ?? 0, pos + 1);
  }
}

/** A pair's 64-bit hash as two 32-bit halves. */
export interface PairHash {
  lo: number;
  hi: number;
}

/** The 64-bit hash's halves read through a shared buffer: BigInt masks and shifts cost more than the hash. */
const HASH_64 = new BigUint64Array(1);
const HASH_32 = new Uint32Array(HASH_64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = 1 - LO;

export function pairHash(tenant: string, dedupeKey: string): PairHash {
  return pairKeyHash(pairKey(tenant, dedupeKey));
}

/** pairHash of a pair already joined by pairKey. */
export function pairKeyHash(key: string): PairHash {
  HASH_64[0] = Bun.hash.wyhash(key);
  return { lo: HASH_32[LO] ?? 0, hi: HASH_32[HI] ?? 0 };
}
