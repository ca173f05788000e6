import type { WriteMode } from '../core/modes.ts';
import { journalRecordId, type Envelope } from '../core/record.ts';
import { SluiceError, describeError } from '../errors.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Sql } from '../outbox/db.ts';
import type { JournalEntry } from '../core/record.ts';
import { existingPairs, insertRows, rowFor, type InsertResult } from '../outbox/repository.ts';
import type { RecentKeys } from './recent-keys.ts';

export type Durability = 'outbox' | 'journal' | 'memory';

export interface WriteResult {
  /** Outbox id (sync), journal position `<node>:<seq>` (fast_ack), null while only in memory (background). */
  id: string | null;
  tenant_id: string;
  dedupe_key: string;
  duplicate: boolean;
  durability: Durability;
}

export interface WritePathOptions {
  mode: WriteMode;
  nodeId: string;
  journal: JournalWriter;
  sql: Sql;
  partitions: number;
  maxBatch: number;
  recentKeys: RecentKeys;
  log: Logger;
  /** Journal records not yet forwarded to the outbox. */
  unforwarded(): number;
  /**
   * fast_ack and background refuse writes past this many unforwarded records: the forwarder is
   * limited by the outbox, and every unforwarded key is held in memory for dedupe.
   */
  maxUnforwarded: number;
  /** Called after rows were committed to the outbox, so an in-process processor can start at once. */
  onCommitted?: () => void;
  /** sync: the last seq the forwarder has inserted into the outbox (its checkpoint). */
  forwardedThrough(): number;
  /** sync: how long a write waits for its outbox insert before it is answered from the journal. */
  outboxWaitMs: number;
}

interface Waiting {
  envelopes: Envelope[];
  /** sync: when (performance.now()) this request must be answered, from the journal if need be. */
  deadline: number;
  resolve: (results: WriteResult[]) => void;
  reject: (err: unknown) => void;
}

const BACKGROUND_RETRY_MAX_MS = 5_000;
/** How long a fast_ack or background write waits for room under SLUICE_MAX_UNFORWARDED. */
const ROOM_WAIT_MS = 2_000;

/**
 * The three write modes of DESIGN.md. `sync` answers after the journal fsync and the outbox commit,
 * gathering concurrent requests into one fsync and one multi-row INSERT. `fast_ack` answers after the
 * fsync and leaves the outbox to the forwarder; `background` answers once the write is queued.
 */
export class WritePath {
  #opts: WritePathOptions;
  #queue: Waiting[] = [];
  #running: Promise<void> | undefined;
  #inFlight = 0;
  #background = new Set<Promise<void>>();
  /** Seqs from `#committedFrom` through `#committedThrough` are in the outbox: this process's sync path inserted them. */
  #committedFrom: number;
  #committedThrough: number;
  /** While a sync batch is between its journal append and the end of its outbox insert: its first possible seq. */
  #unsettledFrom: number | undefined;
  /**
   * sync: tenants with a write answered from the journal that the forwarder has not inserted yet,
   * with the seq of their last such write. Their later writes take the same way, so none overtakes it.
   */
  #viaJournal = new Map<string, number>();

  constructor(opts: WritePathOptions) {
    this.#opts = opts;
    // Seqs written before this process started are the forwarder's to check.
    this.#committedFrom = opts.journal.nextSeq;
    this.#committedThrough = this.#committedFrom - 1;
  }

  /** Writes accepted but not yet answered (or, in background mode, not yet journaled). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Every seq up to this one has finished its sync outbox insert, successfully or not. The forwarder
   * reads no further: a line it inserted first would turn the client's own write into a "duplicate".
   */
  get settledThrough(): number {
    return (this.#unsettledFrom ?? this.#opts.journal.nextSeq) - 1;
  }

  /**
   * The seqs this process's sync path inserted into the outbox, without a gap: the forwarder need not
   * insert those again. It stops advancing at the first batch whose insert failed.
   */
  get committed(): { from: number; through: number } {
    return { from: this.#committedFrom, through: this.#committedThrough };
  }

  write(envelopes: Envelope[]): Promise<WriteResult[]> {
    if (this.#opts.mode === 'sync') return this.#writeSync(envelopes);
    const building = this.#opts.recentKeys.building;
    // A key the half-built index lacks may be a repeat of a journal line not read yet: answered once it is read.
    if (building !== undefined && envelopes.some((e) => !this.#opts.recentKeys.has(e.tenant_id, e.dedupe_key))) return building.then(() => this.write(envelopes));
    if (this.#waiting() + envelopes.length <= this.#opts.maxUnforwarded) return this.#writeAhead(envelopes);
    // Only past the limit is it worth looking keys up twice: a repeat of a held key takes no room and
    // is answered as a duplicate however full the backlog is.
    const fresh = envelopes.filter((e) => !this.#opts.recentKeys.has(e.tenant_id, e.dedupe_key)).length;
    if (fresh === 0 || this.#waiting() + fresh <= this.#opts.maxUnforwarded) return this.#writeAhead(envelopes);
    return this.#roomFor(fresh).then(() => this.#writeAhead(envelopes));
  }

  /**
   * True when every write of the request repeats a key this node holds: in fast_ack and background
   * the dedupe index says so, in sync the outbox (one probe of its unique index a key). Such a
   * request can only be answered as duplicates, so no backlog limit needs to refuse it.
   */
  async holds(envelopes: readonly Envelope[]): Promise<boolean> {
    const { mode, recentKeys, sql } = this.#opts;
    if (mode !== 'sync') return envelopes.every((e) => recentKeys.has(e.tenant_id, e.dedupe_key));
    const distinct = new Set(envelopes.map((e) => `${e.tenant_id}\u0000${e.dedupe_key}`));
    return (await existingPairs(sql, [...envelopes])).size === distinct.size;
  }

  /**
   * Why every new write would be refused now, or undefined: readiness reports it, so a load balancer
   * stops sending writes this node can only answer with 429.
   */
  get refusal(): string | undefined {
    if (this.#opts.mode === 'sync' || this.#waiting() < this.#opts.maxUnforwarded) return undefined;
    return `${this.#waiting()} journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=${this.#opts.maxUnforwarded})`;
  }

  #waiting(): number {
    return this.#opts.unforwarded() + this.#inFlight;
  }

  /**
   * Past the limit a write waits (a little) for the forwarder rather than being refused at once:
   * under sustained overload ingest then runs at the outbox's pace, and requests parsed only to be
   * refused do not eat the CPU the forwarder needs.
   */
  async #roomFor(events: number): Promise<void> {
    const deadline = performance.now() + ROOM_WAIT_MS;
    while (this.#waiting() + events > this.#opts.maxUnforwarded) {
      if (performance.now() > deadline) {
        throw new SluiceError(
          'backlog_full',
          `${this.#waiting()} journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=${this.#opts.maxUnforwarded}); retry shortly`,
          { retryAfter: 1 },
        );
      }
      await Bun.sleep(5);
    }
  }

  /** Resolves once every accepted write has been answered and every background write journaled. */
  async drain(): Promise<void> {
    while (this.#running !== undefined || this.#background.size > 0) {
      await this.#running;
      await Promise.all(this.#background);
    }
  }

  #writeSync(envelopes: Envelope[]): Promise<WriteResult[]> {
    this.#inFlight += envelopes.length;
    return new Promise<WriteResult[]>((resolve, reject) => {
      this.#queue.push({ envelopes, deadline: performance.now() + this.#opts.outboxWaitMs, resolve, reject });
      this.#running ??= this.#drainQueue();
    }).finally(() => {
      this.#inFlight -= envelopes.length;
    });
  }

  async #drainQueue(): Promise<void> {
    for (;;) {
      const batch = this.#take();
      if (batch.length === 0) {
        // Cleared in the same turn as the empty check, so no write can be left waiting.
        this.#running = undefined;
        return;
      }
      await this.#commit(batch);
    }
  }

  #take(): Waiting[] {
    const batch: Waiting[] = [];
    let events = 0;
    for (let next = this.#queue[0]; next !== undefined; next = this.#queue[0]) {
      if (batch.length > 0 && events + next.envelopes.length > this.#opts.maxBatch) break;
      this.#queue.shift();
      batch.push(next);
      events += next.envelopes.length;
    }
    return batch;
  }

  async #commit(batch: Waiting[]): Promise<void> {
    const envelopes = batch.flatMap((w) => w.envelopes);
    this.#unsettledFrom = this.#opts.journal.nextSeq;
    try {
      const entries = await this.#opts.journal.append(envelopes);
      this.#forgetForwarded();
      const direct = entries.filter((e) => !this.#viaJournal.has(e.tenant_id));
      // The batch's oldest request bounds the wait: one queued behind a hung insert is not owed a
      // whole wait of its own on top of the time it already spent in the queue.
      const deadline = Math.min(...batch.map((w) => w.deadline));
      const inserted = direct.length === 0 ? new Map<number, InsertResult>() : await this.#insert(direct, envelopes.length, deadline);
      if (inserted !== undefined && inserted.size > 0) {
        const first = direct[0]?.seq ?? 0;
        const last = direct.at(-1)?.seq ?? 0;
        // The forwarder skips this range: only a batch inserted whole, and a range without holes.
        if (direct.length === entries.length) {
          if (first !== this.#committedThrough + 1) this.#committedFrom = first;
          this.#committedThrough = last;
        }
        this.#opts.onCommitted?.();
      }
      const { nodeId } = this.#opts;
      const results = entries.map((e): WriteResult => {
        const r = inserted?.get(e.seq);
        if (r !== undefined) return { id: r.id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: r.duplicate, durability: 'outbox' };
        // Fsynced in the journal; the forwarder inserts it once the outbox answers. Answered as
        // fast_ack would answer it: a 503 would have clients without a dedupe_key of their own
        // retry under a new key and publish twice.
        this.viaJournalUntilForwarded(e.tenant_id, e.seq);
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
      this.#unsettledFrom = undefined;
    }
  }

  /** Inserts into the outbox by `deadline`; undefined when it failed or took longer. */
  async #insert(entries: JournalEntry[], events: number, deadline: number): Promise<Map<number, InsertResult> | undefined> {
    const { sql, partitions, outboxWaitMs, log } = this.#opts;
    const waitMs = deadline - performance.now();
    if (waitMs <= 0) {
      log.error('outbox wait spent in the queue behind a slow insert; writes acknowledged from the journal', { wait_ms: outboxWaitMs, events });
      return undefined;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const insert = insertRows(sql, entries.map((e) => rowFor(e, partitions)));
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), waitMs);
    });
    try {
      const inserted = await Promise.race([insert, late]);
      if (inserted === 'late') {
        // It may still commit: the forwarder's insert of the same lines then finds the rows there.
        insert.catch(() => {});
        log.error('outbox insert too slow; writes acknowledged from the journal', { wait_ms: outboxWaitMs, events });
        return undefined;
      }
      const bySeq = new Map<number, InsertResult>();
      entries.forEach((e, i) => {
        const r = inserted[i];
        if (r !== undefined) bySeq.set(e.seq, r);
      });
      return bySeq;
    } catch (err) {
      log.error('outbox insert failed; writes acknowledged from the journal', { error: describeError(err), events });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** sync: the tenant's writes are answered from the journal until the forwarder has passed `seq`. */
  viaJournalUntilForwarded(tenant: string, seq: number): void {
    if (seq > (this.#viaJournal.get(tenant) ?? 0)) this.#viaJournal.set(tenant, seq);
  }

  /** Tenants whose journal-answered writes the forwarder has inserted may go straight to the outbox again. */
  #forgetForwarded(): void {
    if (this.#viaJournal.size === 0) return;
    const forwarded = this.#opts.forwardedThrough();
    for (const [tenant, seq] of this.#viaJournal) if (seq <= forwarded) this.#viaJournal.delete(tenant);
  }

  /**
   * fast_ack and background: duplicates are answered from the recent-keys index (the outbox does not
   * have the row yet); fresh keys are reserved there before the journal write, so a concurrent repeat
   * is a duplicate too.
   */
  async #writeAhead(envelopes: Envelope[]): Promise<WriteResult[]> {
    const { recentKeys, mode } = this.#opts;
    const durability: Durability = mode === 'fast_ack' ? 'journal' : 'memory';
    const fresh: Envelope[] = [];
    const originals: (Promise<string | null> | undefined)[] = [];
    let settle!: { resolve: (ids: (string | null)[]) => void; reject: (err: unknown) => void };
    const ids = new Promise<(string | null)[]>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Awaited only if a repeat arrives; a failure reaches that repeat, not the unhandled-rejection hook.
    ids.catch(() => {});
    for (const e of envelopes) {
      const original = recentKeys.claim(e.tenant_id, e.dedupe_key, { ids, index: fresh.length });
      originals.push(original);
      if (original === undefined) fresh.push(e);
    }

    const journaled = this.#journalAhead(fresh, settle);
    let freshIds: (string | null)[];
    if (mode === 'fast_ack') {
      freshIds = await journaled;
    } else {
      freshIds = fresh.map(() => null);
      this.#trackBackground(journaled);
    }
    let next = 0;
    const results: WriteResult[] = [];
    for (const [i, e] of envelopes.entries()) {
      const original = originals[i];
      const id = original === undefined ? (freshIds[next++] ?? null) : mode === 'fast_ack' ? await original : null;
      results.push({ id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: original !== undefined, durability });
    }
    return results;
  }

  /** Appends fresh writes to the journal; in background mode retries until it succeeds or sluice stops. */
  async #journalAhead(
    fresh: Envelope[],
    settle: { resolve: (ids: (string | null)[]) => void; reject: (err: unknown) => void },
  ): Promise<(string | null)[]> {
    if (fresh.length === 0) {
      settle.resolve([]);
      return [];
    }
    const { journal, recentKeys, nodeId, mode, log } = this.#opts;
    this.#inFlight += fresh.length;
    try {
      let backoff = 100;
      for (;;) {
        try {
          const entries = await journal.append(fresh);
          const ids = entries.map((e) => journalRecordId(nodeId, e.seq));
          for (const e of entries) recentKeys.journaled(e.tenant_id, e.dedupe_key, e.seq);
          settle.resolve(ids);
          return ids;
        } catch (err) {
          const stopping = err instanceof SluiceError && err.code === 'shutting_down';
          if (mode === 'fast_ack' || stopping) throw err;
          log.error('background write not journaled yet; retrying', { error: describeError(err), events: fresh.length });
          await Bun.sleep(backoff);
          backoff = Math.min(BACKGROUND_RETRY_MAX_MS, backoff * 2);
        }
      }
    } catch (err) {
      for (const e of fresh) recentKeys.release(e.tenant_id, e.dedupe_key);
      settle.reject(err);
      if (mode === 'background') log.error('background writes lost: journal unavailable at shutdown', { events: fresh.length });
      throw err;
    } finally {
      this.#inFlight -= fresh.length;
    }
  }

  #trackBackground(p: Promise<unknown>): void {
    const tracked = p.then(
      () => {},
      () => {},
    );
    this.#background.add(tracked);
    void tracked.finally(() => this.#background.delete(tracked));
  }
}
