import { systemClock, type Clock } from '../core/clock.ts';
import { type Envelope, journalRecordId, pairKey } from '../core/record.ts';
import type { InsertResult } from '../outbox/outbox.ts';
import { insertWithin, type InsertMissed } from './outbox-insert.ts';
import type { WritePath, WritePathOptions, WriteResult } from './write-path.ts';

export type SyncWritesOptions = Pick<WritePathOptions, 'nodeId' | 'journal' | 'progress' | 'outbox' | 'maxBatch' | 'outboxWaitMs' | 'log' | 'clock'>;

interface Waiting {
  envelopes: Envelope[];
  /** When (on the clock) this request must be answered, from the journal if need be. */
  deadline: number;
  resolve: (results: WriteResult[]) => void;
  reject: (err: unknown) => void;
}

/**
 * sync: validate → journal → outbox inside the request. Concurrent requests are gathered into one
 * group commit: one journal fsync and one multi-row INSERT. A write whose insert fails or outlasts
 * the wait is answered from the journal, and the forwarder inserts it later.
 */
export class SyncWrites implements WritePath {
  #o: SyncWritesOptions;
  #clock: Clock;
  #queue: Waiting[] = [];
  #running: Promise<void> | undefined;
  #inFlight = 0;
  /** Since the first group answered from the journal, until an insert answers again: logged at both ends only. */
  #outage: { since: number; groups: number; events: number } | undefined;

  constructor(opts: SyncWritesOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? systemClock;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** sync refuses nothing for a backlog: the outbox is written in the request. */
  get refusal(): undefined {
    return undefined;
  }

  /** True when the outbox holds every key of the request (one probe of its unique index a key). */
  async holds(envelopes: readonly Envelope[]): Promise<boolean> {
    const distinct = new Set(envelopes.map((e) => pairKey(e.tenant_id, e.dedupe_key)));
    return (await this.#o.outbox.existingPairs([...envelopes])).size === distinct.size;
  }

  write(envelopes: Envelope[]): Promise<WriteResult[]> {
    this.#inFlight += envelopes.length;
    return new Promise<WriteResult[]>((resolve, reject) => {
      this.#queue.push({ envelopes, deadline: this.#clock.now() + this.#o.outboxWaitMs, resolve, reject });
      this.#running ??= this.#drainQueue();
    }).finally(() => {
      this.#inFlight -= envelopes.length;
    });
  }

  async drain(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drainQueue(): Promise<void> {
    for (;;) {
      const batch = this.#take();
      if (batch.length === 0) {
        // Cleared in the same turn as the empty check, so no write can be left waiting.
        this.#running = undefined;
        return;
      }
      await this.#groupCommit(batch);
    }
  }

  /**
   * One line when the outbox stops answering in time and one when it answers again, not one per
   * group commit: an outage of a minute under load would otherwise log hundreds of the same error.
   */
  #missed(why: InsertMissed, events: number): void {
    if (this.#outage !== undefined) return;
    this.#outage = { since: this.#clock.now(), groups: 0, events: 0 };
    this.#o.log.error(why.msg, { ...why.fields, events, note: 'logged once until an insert answers again' });
  }

  #answered(): void {
    const outage = this.#outage;
    if (outage === undefined) return;
    this.#outage = undefined;
    this.#o.log.info('outbox inserts answer again; sync writes answered from the outbox', {
      down_ms: Math.round(this.#clock.now() - outage.since),
      groups_from_journal: outage.groups,
      events_from_journal: outage.events,
    });
  }

  #take(): Waiting[] {
    const batch: Waiting[] = [];
    let events = 0;
    for (let next = this.#queue[0]; next !== undefined; next = this.#queue[0]) {
      if (batch.length > 0 && events + next.envelopes.length > this.#o.maxBatch) break;
      this.#queue.shift();
      batch.push(next);
      events += next.envelopes.length;
    }
    return batch;
  }

  async #groupCommit(batch: Waiting[]): Promise<void> {
    const { journal, progress, nodeId } = this.#o;
    const envelopes = batch.flatMap((w) => w.envelopes);
    progress.inserting(journal.nextSeq);
    let inserted: Map<number, InsertResult> | undefined;
    let whole: { first: number; last: number } | undefined;
    try {
      const entries = await journal.append(envelopes);
      const direct = entries.filter((e) => !progress.viaJournal(e.tenant_id));
      // The batch's oldest request bounds the wait: one queued behind a hung insert is not owed a
      // whole wait of its own on top of the time it already spent in the queue.
      const deadline = Math.min(...batch.map((w) => w.deadline));
      if (direct.length === 0) inserted = new Map<number, InsertResult>();
      else {
        const outcome = await insertWithin({ ...this.#o, entries: direct, deadline, waitMs: this.#o.outboxWaitMs });
        if (outcome instanceof Map) {
          inserted = outcome;
          this.#answered();
        } else this.#missed(outcome, envelopes.length);
      }
      // Counted for the line that ends the outage: also the writes of tenants already behind the
      // journal, which try no insert of their own.
      if (this.#outage !== undefined) {
        const fromJournal = entries.length - (inserted?.size ?? 0);
        if (fromJournal > 0) {
          this.#outage.groups++;
          this.#outage.events += fromJournal;
        }
      }
      // The forwarder skips this range: only a batch inserted whole, and a range without holes.
      if (inserted !== undefined && inserted.size > 0 && direct.length === entries.length) {
        whole = { first: direct[0]?.seq ?? 0, last: direct.at(-1)?.seq ?? 0 };
      }
      const results = entries.map((e): WriteResult => {
        const r = inserted?.get(e.seq);
        if (r !== undefined) return { id: r.id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: r.duplicate, durability: 'outbox' };
        // Fsynced in the journal; the forwarder inserts it once the outbox answers. Answered as
        // fast_ack would answer it: a 503 would have clients without a dedupe_key of their own
        // retry under a new key and publish twice.
        progress.viaJournalUntilForwarded(e.tenant_id, e.seq);
        return { id: journalRecordId(nodeId, e.seq), tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: false, durability: 'journal' };
      });
      let offset = 0;
      for (const w of batch) {
        w.resolve(results.slice(offset, offset + w.envelopes.length));
        offset += w.envelopes.length;
      }
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      progress.settled(inserted !== undefined && inserted.size > 0, whole);
    }
  }
}
