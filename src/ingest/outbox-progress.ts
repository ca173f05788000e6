import type { JournalWriter } from '../journal/writer.ts';
import { Watermark } from '../core/watermark.ts';

/**
 * The one record of which of this node's journal seqs are in the outbox, shared by the stages that
 * put them there: the forwarder (every seq through its checkpoint) and the sync write path (the
 * batches it inserted itself, without a gap). The forwarder skips what the sync path inserted and
 * reads nothing the sync path is still inserting; the write path measures its backlog against it,
 * and sync keeps a tenant with a write only the journal holds on the journal's way (`viaJournal`).
 */
export class OutboxProgress {
  /** Every seq through this one is in the outbox (or quarantined): the forwarder's checkpoint. */
  readonly forwarded = new Watermark();
  /** Counts each time rows entered the outbox, by either stage: the processor's cue to look. */
  readonly entered = new Watermark();
  /**
   * Moves when a sync batch settled with seqs only the forwarder will insert (answered from the
   * journal). The forwarder reads no seq while its batch inserts and then waits for its poll: this
   * wakes it, or such a write would wait SLUICE_POLL_MS for the outbox.
   */
  readonly leftToForward = new Watermark();
  #journal: Pick<JournalWriter, 'nextSeq'>;
  /** Seqs from `#directFrom` through `#directThrough` were inserted by this process's sync path. */
  #directFrom: number;
  #directThrough: number;
  /** While a sync batch is between its journal append and the end of its outbox insert: its first possible seq. */
  #insertingFrom: number | undefined;
  /**
   * Tenants with a write answered from the journal (or left unforwarded by the last run) that the
   * forwarder has not inserted yet, with the seq of their last such write.
   */
  #viaJournal = new Map<string, number>();

  constructor(journal: Pick<JournalWriter, 'nextSeq'>) {
    this.#journal = journal;
    // Seqs written before this process started are the forwarder's to check.
    this.#directFrom = journal.nextSeq;
    this.#directThrough = this.#directFrom - 1;
  }

  /** Journal records not yet forwarded to the outbox. */
  get unforwarded(): number {
    return Math.max(0, this.#journal.nextSeq - 1 - this.forwarded.value);
  }

  /**
   * Every seq up to this one has finished its sync outbox insert, successfully or not. The forwarder
   * reads no further: a line it inserted first would turn the client's own write into a "duplicate".
   */
  get settledThrough(): number {
    return (this.#insertingFrom ?? this.#journal.nextSeq) - 1;
  }

  /** Whether the sync path inserted this seq, so the forwarder need not insert it again. */
  insertedDirectly(seq: number): boolean {
    return seq >= this.#directFrom && seq <= this.#directThrough;
  }

  /** A sync batch is about to be journaled at `firstSeq` onwards and then inserted. */
  inserting(firstSeq: number): void {
    this.#insertingFrom = firstSeq;
  }

  /**
   * The sync batch's insert ended. `whole` names its seqs when every one of them is in the outbox:
   * only such a batch extends the range the forwarder skips (it stops at the first that was not).
   */
  settled(inserted: boolean, whole?: { first: number; last: number }): void {
    this.#insertingFrom = undefined;
    if (whole !== undefined) {
      if (whole.first !== this.#directThrough + 1) this.#directFrom = whole.first;
      this.#directThrough = whole.last;
    }
    if (inserted) this.entered.advance(this.entered.value + 1);
    if (whole === undefined) this.leftToForward.advance(this.leftToForward.value + 1);
  }

  /** The tenant's sync writes are answered from the journal until the forwarder has passed `seq`, so none overtakes it. */
  viaJournalUntilForwarded(tenant: string, seq: number): void {
    if (seq > (this.#viaJournal.get(tenant) ?? 0)) this.#viaJournal.set(tenant, seq);
  }

  /** Whether the tenant has a write the journal holds and the outbox does not yet. */
  viaJournal(tenant: string): boolean {
    return this.#viaJournal.has(tenant);
  }

  /** The forwarder committed its checkpoint at `seq`. */
  forwardedThrough(seq: number): void {
    this.forwarded.advance(seq);
    // Tenants whose journal-answered writes the forwarder has inserted may go straight to the outbox again.
    for (const [tenant, last] of this.#viaJournal) if (last <= this.forwarded.value) this.#viaJournal.delete(tenant);
    this.entered.advance(this.entered.value + 1);
  }
}
