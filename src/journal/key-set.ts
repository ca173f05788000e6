/**
 * A set of (tenant, dedupe key) pairs held as 64-bit hashes in one open-addressed table: 16 bytes a
 * key at the most (load kept under one half), where a Set of strings costs ~100. Used to count
 * duplicates across a whole dry-run replay of millions of journal lines. Two different pairs share a
 * hash with odds of about n²/2⁶⁵ (10 million keys: 3 in a million), and are then counted as one.
 */
export class PairHashSet {
  #slots = new BigUint64Array(1 << 16);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Adds the pair; false when it was there already. */
  add(tenant: string, key: string): boolean {
    // 0 marks an empty slot, so a hash of 0 is stored as 1.
    const h = Bun.hash.wyhash(`${tenant}\u0000${key}`) || 1n;
    if (!insert(this.#slots, h)) return false;
    if (++this.#size * 2 > this.#slots.length) this.#grow();
    return true;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new BigUint64Array(old.length * 2);
    for (const h of old) if (h !== 0n) insert(this.#slots, h);
  }
}

function insert(slots: BigUint64Array, h: bigint): boolean {
  const mask = slots.length - 1;
  for (let i = Number(h & BigInt(mask)); ; i = (i + 1) & mask) {
    const at = slots[i];
    if (at === 0n) {
      slots[i] = h;
      return true;
    }
    if (at === h) return false;
  }
}
