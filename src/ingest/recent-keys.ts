/** A reserved key's write: entry `index` of its batch's ids, once that batch is journaled. */
export interface PendingWrite {
  ids: Promise<(string | null)[]>;
  index: number;
}

/**
 * Dedupe index for the write modes that answer before the outbox has the row (fast_ack, background).
 * Every key whose write is not yet forwarded stays, so a repeat inside that window is answered as a
 * duplicate; forwarded keys are kept too, up to `keepForwarded`, oldest evicted first. The outbox's
 * unique constraint remains the final word for anything older.
 *
 * A key holds its id as a plain string once journaled, and until then a reference to its batch: no
 * promise or object per event, which kept hundreds of thousands of keys costly in CPU and memory.
 */
export class RecentKeys {
  #entries = new Map<string, string | PendingWrite>();
  // Journaled keys in seq order, as two parallel arrays rather than an object per key.
  #orderKeys: string[] = [];
  #orderSeqs: number[] = [];
  #head = 0;
  #forwardedEnd = 0;
  #forwardedSeq = 0;
  #keepForwarded: number;

  constructor(keepForwarded: number) {
    this.#keepForwarded = keepForwarded;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Reserves a key before its write is journaled, so a concurrent repeat already sees it; returns
   * undefined then. For a known key nothing changes and the original write's id is returned.
   */
  claim(tenant: string, dedupeKey: string, pending: PendingWrite): Promise<string | null> | undefined {
    const key = pairKey(tenant, dedupeKey);
    const original = this.#entries.get(key);
    if (original === undefined) {
      this.#entries.set(key, pending);
      return undefined;
    }
    if (typeof original === 'string') return Promise.resolve(original);
    return original.ids.then((all) => all[original.index] ?? null);
  }

  /** True when the key is held (journaled or being journaled): a write of it would be a duplicate. */
  has(tenant: string, dedupeKey: string): boolean {
    return this.#entries.has(pairKey(tenant, dedupeKey));
  }

  /** The write was journaled at `seq` with this id; from here on it ages out once forwarded. */
  journaled(tenant: string, dedupeKey: string, seq: number, id: string): void {
    const key = pairKey(tenant, dedupeKey);
    this.#entries.set(key, id);
    this.#orderKeys.push(key);
    this.#orderSeqs.push(seq);
  }

  /** The write failed: a retry must not be mistaken for a duplicate. */
  release(tenant: string, dedupeKey: string): void {
    this.#entries.delete(pairKey(tenant, dedupeKey));
  }

  /** Everything up to `seq` is in the outbox. */
  forwarded(seq: number): void {
    this.#forwardedSeq = Math.max(this.#forwardedSeq, seq);
    this.#evict();
  }

  #evict(): void {
    const seqs = this.#orderSeqs;
    while (this.#forwardedEnd < seqs.length && (seqs[this.#forwardedEnd] ?? Infinity) <= this.#forwardedSeq) {
      this.#forwardedEnd++;
    }
    while (this.#forwardedEnd - this.#head > this.#keepForwarded) {
      const key = this.#orderKeys[this.#head++];
      if (key !== undefined) this.#entries.delete(key);
    }
    if (this.#head > 1024 && this.#head * 2 > seqs.length) {
      this.#orderKeys = this.#orderKeys.slice(this.#head);
      this.#orderSeqs = seqs.slice(this.#head);
      this.#forwardedEnd -= this.#head;
      this.#head = 0;
    }
  }
}

function pairKey(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}
