/**
 * Dedupe index for the write modes that answer before the outbox has the row (fast_ack, background).
 * Every key whose write is not yet forwarded stays, so a repeat inside that window is answered as a
 * duplicate; forwarded keys are kept too, up to `keepForwarded`, oldest evicted first. The outbox's
 * unique constraint remains the final word for anything older.
 */
export class RecentKeys {
  #entries = new Map<string, Promise<string | null>>();
  #order: { key: string; seq: number }[] = [];
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

  /** The original write's id (a promise while it is still being journaled), or undefined when new. */
  lookup(tenant: string, dedupeKey: string): Promise<string | null> | undefined {
    return this.#entries.get(pairKey(tenant, dedupeKey));
  }

  /** Claims a key before its write is journaled, so a concurrent repeat already sees it. */
  reserve(tenant: string, dedupeKey: string, id: Promise<string | null>): void {
    this.#entries.set(pairKey(tenant, dedupeKey), id);
  }

  /** The write was journaled at `seq`; from here on it ages out once forwarded. */
  journaled(tenant: string, dedupeKey: string, seq: number): void {
    this.#order.push({ key: pairKey(tenant, dedupeKey), seq });
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
    while (this.#forwardedEnd < this.#order.length && (this.#order[this.#forwardedEnd]?.seq ?? Infinity) <= this.#forwardedSeq) {
      this.#forwardedEnd++;
    }
    while (this.#forwardedEnd - this.#head > this.#keepForwarded) {
      const e = this.#order[this.#head++];
      if (e !== undefined) this.#entries.delete(e.key);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#forwardedEnd -= this.#head;
      this.#head = 0;
    }
  }
}

function pairKey(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}
