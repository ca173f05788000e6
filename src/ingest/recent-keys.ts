import { journalRecordId, pairKey } from '../core/record.ts';
import { KeyIndex, pairKeyHash } from './key-index.ts';

/**
 * The batch whose journal write a reserved key waits for: a repeat of the key is answered with the id
 * at the key's place among the batch's fresh writes, once the batch is journaled. The batch itself
 * is the Map's value, so a reservation costs no object of its own.
 */
export interface PendingBatch {
  ids(): Promise<(string | null)[]>;
  /** The key's place among the batch's fresh writes (the order of its ids). */
  indexOf(key: string): number;
}

/**
 * The keys `claim` reserved, in order, as it computed them (joined, and hashed as two halves):
 * handed back to `journaledClaim` or `releaseClaim` by place, so none is computed again, in arrays
 * rather than an object per key.
 */
export class ClaimedKeys {
  readonly keys: string[] = [];
  readonly lo: number[] = [];
  readonly hi: number[] = [];

  get length(): number {
    return this.keys.length;
  }
}

/**
 * Dedupe index for the write modes that answer before the outbox has the row (fast_ack, background).
 * Every key whose write is not yet forwarded stays, so a repeat inside that window is answered as a
 * duplicate; forwarded keys are kept too, up to `keepForwarded`, oldest evicted first. The outbox's
 * unique constraint remains the final word for anything older.
 *
 * Journaled keys live in a compact hash index (24–48 bytes a key, see KeyIndex), their id being
 * `<node>:<seq>`; only keys whose write is on its way to the journal sit in a Map, by exact string,
 * with a reference to their batch: no promise or object per event.
 */
export class RecentKeys {
  #pending = new Map<string, PendingBatch>();
  #index: KeyIndex;
  #keepForwarded: number;
  #nodeId: string;
  #forwardedSeq = 0;
  /** The highest seq registered: every journaled write up to it is in the index or was evicted. */
  #through = 0;
  #building: Promise<void> | undefined;

  constructor(keepForwarded: number, nodeId: string, index = new KeyIndex()) {
    this.#keepForwarded = keepForwarded;
    this.#nodeId = nodeId;
    this.#index = index;
  }

  get size(): number {
    return this.#pending.size + this.#index.size;
  }

  /** The journaled keys, for a snapshot. */
  get index(): KeyIndex {
    return this.#index;
  }

  /** How many forwarded keys are held beyond the unforwarded ones. */
  get keepForwarded(): number {
    return this.#keepForwarded;
  }

  get through(): number {
    return this.#through;
  }

  /**
   * While the index is being rebuilt from the journal (no usable snapshot at start): settles once
   * every journaled key is in it. Until then a key it does not hold may still be in the part of the
   * journal not read yet, so only keys it holds can be answered.
   */
  get building(): Promise<void> | undefined {
    return this.#building;
  }

  /** `done` rejects when the rebuild was stopped: the index then stays unsure (no snapshot of it, no write waiting on it goes through). */
  rebuilding(done: Promise<void>): void {
    this.#building = done.then(() => {
      this.#building = undefined;
    });
    // Reaches the writes that wait on it; none may be left to the unhandled-rejection hook.
    this.#building.catch(() => {});
  }

  /**
   * Reserves a key before its write is journaled, so a concurrent repeat already sees it; returns
   * undefined then, and adds the reserved key to `claimed` (in the order of `batch`'s fresh writes).
   * For a known key nothing changes and the original write's id is returned.
   */
  claim(tenant: string, dedupeKey: string, batch: PendingBatch, claimed: ClaimedKeys): Promise<string | null> | undefined {
    const key = pairKey(tenant, dedupeKey);
    const original = this.#pending.get(key);
    if (original !== undefined) return original.ids().then((all) => all[original.indexOf(key)] ?? null);
    const hash = pairKeyHash(key);
    const seq = this.#index.get(hash);
    if (seq !== undefined) return Promise.resolve(journalRecordId(this.#nodeId, seq));
    this.#pending.set(key, batch);
    claimed.keys.push(key);
    claimed.lo.push(hash.lo);
    claimed.hi.push(hash.hi);
    return undefined;
  }

  /** True when the key is held (journaled or being journaled): a write of it would be a duplicate. */
  has(tenant: string, dedupeKey: string): boolean {
    const key = pairKey(tenant, dedupeKey);
    return this.#pending.has(key) || this.#index.get(pairKeyHash(key)) !== undefined;
  }

  /** The write was journaled at `seq` (seqs come in ascending order); from here on it ages out once forwarded. */
  journaled(tenant: string, dedupeKey: string, seq: number): void {
    const key = pairKey(tenant, dedupeKey);
    const hash = pairKeyHash(key);
    this.#pending.delete(key);
    this.#indexJournaled(hash.lo, hash.hi, seq);
  }

  /** `journaled` of the key `claim` reserved at place `i` of `claimed`. */
  journaledClaim(claimed: ClaimedKeys, i: number, seq: number): void {
    this.#pending.delete(claimed.keys[i] as string);
    this.#indexJournaled(claimed.lo[i] as number, claimed.hi[i] as number, seq);
  }

  #indexJournaled(lo: number, hi: number, seq: number): void {
    this.#index.addHalves(lo, hi, seq);
    this.#through = Math.max(this.#through, seq);
  }

  /** The write of the key `claim` reserved at place `i` of `claimed` failed: a retry must not be mistaken for a duplicate. */
  releaseClaim(claimed: ClaimedKeys, i: number): void {
    this.#pending.delete(claimed.keys[i] as string);
  }

  /** Keys journaled through `through` were loaded from a snapshot. */
  loaded(through: number): void {
    this.#through = Math.max(this.#through, through);
    this.#evict();
  }


  /** Everything up to `seq` is in the outbox. */
  forwarded(seq: number): void {
    this.#forwardedSeq = Math.max(this.#forwardedSeq, seq);
    this.#evict();
  }

  #evict(): void {
    // Forwarded entries are the oldest ones (seq order): evict from the front past the keep window.
    const index = this.#index;
    const limit = keptEntries(this.#through, this.#forwardedSeq, this.#keepForwarded);
    while (index.size > limit && (index.oldestSeq ?? Infinity) <= this.#forwardedSeq) index.evictOldest();
  }
}

/**
 * How many entries the index keeps, journaled through `through` and forwarded through `forwarded`:
 * every unforwarded one and `keepForwarded` forwarded ones; only forwarded entries, oldest first, are
 * ever evicted past it.
 */
export function keptEntries(through: number, forwarded: number, keepForwarded: number): number {
  return Math.max(0, through - forwarded) + keepForwarded;
}
