import { systemClock, type Clock } from '../core/clock.ts';
import { type Envelope, journalRecordId } from '../core/record.ts';
import { SluiceError, describeError } from '../errors.ts';
import { Watermark } from '../core/watermark.ts';
import { ClaimedKeys, type PendingBatch, type RecentKeys } from './recent-keys.ts';
import type { AppendWaiter } from '../journal/writer.ts';
import type { JournalEntry } from '../core/record.ts';
import type { Durability, HeldBody, WritePath, WritePathOptions, WriteResult } from './write-path.ts';

export type AheadWritesOptions = Pick<WritePathOptions, 'nodeId' | 'journal' | 'progress' | 'recentKeys' | 'maxUnforwarded' | 'log' | 'clock'> & {
  /** When a write is answered: after its journal fsync (fast_ack), or once it is queued (background). */
  answer: 'journaled' | 'queued';
  /** Whether the forwarder's passes are failing now (the outbox down, say). */
  forwarderFailing?: () => boolean;
};

const BACKGROUND_RETRY_MAX_MS = 5_000;
/** How long a write waits for room under SLUICE_MAX_UNFORWARDED. */
const ROOM_WAIT_MS = 2_000;
/** How often a waiting write looks whether the forwarder is failing. */
const FAILING_LOOK_MS = 100;

/**
 * fast_ack and background: validate → dedupe index → journal, and the forwarder behind it fills the
 * outbox. Duplicates are answered from the recent-keys index (the outbox does not have the row yet);
 * fresh keys are reserved there before the journal write, so a concurrent repeat is a duplicate too.
 */
export class AheadWrites implements WritePath {
  #o: AheadWritesOptions;
  #clock: Clock;
  #inFlight = 0;
  /** Moves each time a write leaves `inFlight`: room may have opened. */
  #left = new Watermark();
  #background = new Set<Promise<void>>();

  constructor(opts: AheadWritesOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? systemClock;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** True when every write of the request repeats a key this node holds. */
  async holds(envelopes: readonly Envelope[]): Promise<boolean> {
    return envelopes.every((e) => this.#o.recentKeys.has(e.tenant_id, e.dedupe_key));
  }

  /**
   * Why every new write would be refused now, or undefined: readiness reports it, so a load balancer
   * stops sending writes this node can only answer with 429.
   */
  get refusal(): string | undefined {
    if (this.#waiting() < this.#o.maxUnforwarded) return undefined;
    return `${this.#waiting()} journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=${this.#o.maxUnforwarded})`;
  }

  write(envelopes: Envelope[], body?: HeldBody): Promise<WriteResult[]> {
    const building = this.#o.recentKeys.building;
    // A key the half-built index lacks may be a repeat of a journal line not read yet: answered once it is read.
    if (building !== undefined && envelopes.some((e) => !this.#o.recentKeys.has(e.tenant_id, e.dedupe_key))) return building.then(() => this.write(envelopes, body));
    if (this.#waiting() + envelopes.length <= this.#o.maxUnforwarded) return this.#writeAhead(envelopes, body);
    // Only past the limit is it worth looking keys up twice: a repeat of a held key takes no room and
    // is answered as a duplicate however full the backlog is.
    const fresh = this.#fresh(envelopes);
    if (fresh === 0 || this.#waiting() + fresh <= this.#o.maxUnforwarded) return this.#writeAhead(envelopes, body);
    if (fresh > this.#o.maxUnforwarded) {
      // No wait makes room for it: a 429 would only be retried for ever.
      return Promise.reject(
        new SluiceError('payload_too_large', `the request has ${fresh} new events, more than SLUICE_MAX_UNFORWARDED=${this.#o.maxUnforwarded} can ever hold`, {
          details: [{ message: `send at most ${this.#o.maxUnforwarded} events a request` }],
        }),
      );
    }
    return this.#writeWhenRoom(fresh, envelopes, body);
  }

  /** Resolves once every background write is journaled. */
  async drain(): Promise<void> {
    while (this.#background.size > 0) await Promise.all(this.#background);
  }

  /** The request's writes that need room: a repeat of a key the node holds takes none. */
  #fresh(envelopes: readonly Envelope[]): number {
    let fresh = 0;
    for (const e of envelopes) if (!this.#o.recentKeys.has(e.tenant_id, e.dedupe_key)) fresh++;
    return fresh;
  }

  #waiting(): number {
    return this.#o.progress.unforwarded + this.#inFlight;
  }

  /**
   * Past the limit a write waits (a little) for the forwarder rather than being refused at once:
   * under sustained overload ingest then runs at the outbox's pace, and requests parsed only to be
   * refused do not eat the CPU the forwarder needs. Not while the forwarder is failing: no room
   * opens then, and holding the client for the wait would only turn a prompt 429 into a timeout.
   *
   * The room is taken by #writeAhead in the same turn as the check that found it. When the
   * forwarder moved, every waiting write wakes: had each taken its room in a later turn, all of them
   * would have seen the same room (an outside test: 417,000 waiting at a limit of 200,000).
   */
  async #writeWhenRoom(fresh: number, envelopes: Envelope[], body: HeldBody | undefined): Promise<WriteResult[]> {
    const deadline = this.#clock.now() + ROOM_WAIT_MS;
    const { forwarded } = this.#o.progress;
    const max = this.#o.maxUnforwarded;
    for (;;) {
      // Its keys are looked up again only once there seems to be room: one held when the wait began
      // may have aged out of the index since, and each look costs a hash a key.
      if (this.#waiting() + fresh <= max) {
        fresh = this.#fresh(envelopes);
        if (this.#waiting() + fresh <= max) return this.#writeAhead(envelopes, body);
      }
      // Its error is not the client's to read (an operator's is in /readyz and the log).
      const failing = this.#o.forwarderFailing?.() === true;
      const left = deadline - this.#clock.now();
      if (left <= 0 || failing) {
        const why = failing ? ', and the forwarder is failing to insert them' : '';
        throw new SluiceError(
          'backlog_full',
          `${this.#waiting()} journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=${this.#o.maxUnforwarded})${why}; retry shortly`,
          { retryAfter: 1 },
        );
      }
      const waited = new AbortController();
      // Woken by the forwarder or a commit, or to look at the forwarder again: one that starts
      // failing meanwhile wakes no one, and its waiters are refused at once as well.
      const sleep = this.#clock.sleep(Math.min(left, FAILING_LOOK_MS), waited.signal);
      await Promise.race([forwarded.next(forwarded.value, waited.signal), this.#left.next(this.#left.value, waited.signal), sleep]);
      waited.abort();
    }
  }

  #writeAhead(envelopes: Envelope[], body: HeldBody | undefined): Promise<WriteResult[]> {
    const { recentKeys, answer } = this.#o;
    const request = new AheadRequest(recentKeys, this.#o.nodeId, this.#settled, answer === 'journaled' ? 'journal' : 'memory');
    // Made only when some key repeats a held one (rare): each such write's original id.
    let originals: (Promise<string | null> | undefined)[] | undefined;
    for (let i = 0; i < envelopes.length; i++) {
      const e = envelopes[i] as Envelope;
      const original = recentKeys.claim(e.tenant_id, e.dedupe_key, request, request.claimed);
      if (original === undefined) request.inputs.push(e);
      else (originals ??= [])[i] = original;
    }
    const fresh = request.inputs.length;
    if (answer === 'queued') {
      if (fresh === 0) request.journaled([]);
      // Its events wait in memory until journaled, past the answer: so does its body's count.
      else this.#trackBackground(this.#journalInBackground(request), body?.keep());
      // Answered at once: a repeat's id is not waited for either (null, as a fresh write's).
      return Promise.resolve(results(envelopes, originals?.map(() => null), undefined, 'memory'));
    }
    if (fresh === 0) {
      request.journaled([]);
    } else {
      this.#inFlight += fresh;
      this.#o.journal.appendFor(request);
    }
    // One promise for the request, settled by the group commit; a repeat's original id is awaited only when there is one.
    return originals === undefined ? request.answer(envelopes) : this.#withOriginals(envelopes, originals, request);
  }

  async #withOriginals(envelopes: Envelope[], originals: (Promise<string | null> | undefined)[], request: AheadRequest): Promise<WriteResult[]> {
    const ids = await request.ids();
    const known: (string | null | undefined)[] = [];
    for (let i = 0; i < envelopes.length; i++) {
      const original = originals[i];
      known.push(original === undefined ? undefined : await original);
    }
    return results(envelopes, known, ids, 'journal');
  }

  /** A group commit (or the failure of one) ended `events` fresh writes. */
  #settled = (events: number): void => {
    this.#inFlight -= events;
    this.#left.advance(this.#left.value + 1);
  };

  /** A background write retries until it is journaled or sluice stops. */
  async #journalInBackground(request: AheadRequest): Promise<void> {
    const { journal, log } = this.#o;
    const events = request.inputs.length;
    this.#inFlight += events;
    let entries: JournalEntry[];
    try {
      let backoff = 100;
      for (;;) {
        try {
          entries = await journal.append(request.inputs);
          break;
        } catch (err) {
          if (err instanceof SluiceError && err.code === 'shutting_down') throw err;
          log.error('background write not journaled yet; retrying', { error: describeError(err), events });
          await this.#clock.sleep(backoff);
          backoff = Math.min(BACKGROUND_RETRY_MAX_MS, backoff * 2);
        }
      }
    } catch (err) {
      // The request releases its keys and settles inFlight.
      request.failed(err);
      log.error('background writes lost: journal unavailable at shutdown', { events });
      throw err;
    }
    request.journaled(entries);
  }

  #trackBackground(p: Promise<unknown>, letGo: (() => void) | undefined): void {
    const tracked = p.then(
      () => letGo?.(),
      () => letGo?.(),
    );
    this.#background.add(tracked);
    void tracked.finally(() => this.#background.delete(tracked));
  }
}

/**
 * One request's fresh writes on their way to the journal, and its journal waiter: the group commit
 * settles it directly, so a fast_ack request costs one promise (its answer) rather than a promise
 * per step. A repeat of one of its keys arriving meanwhile asks for its ids (`ids`), made only then.
 * It is the pending batch of each of its fresh keys in the dedupe index (see RecentKeys.claim).
 */
class AheadRequest implements AppendWaiter, PendingBatch {
  readonly inputs: Envelope[] = [];
  /** What claim computed for each fresh key: the journaled key is registered without joining and hashing it again. */
  readonly claimed = new ClaimedKeys();
  #recentKeys: RecentKeys;
  #nodeId: string;
  #settled: (events: number) => void;
  #durability: Durability;
  #ids: (string | null)[] | undefined;
  #failure: { err: unknown } | undefined;
  #envelopes: Envelope[] | undefined;
  #answer: PromiseWithResolvers<WriteResult[]> | undefined;
  #idsWanted: PromiseWithResolvers<(string | null)[]> | undefined;

  constructor(recentKeys: RecentKeys, nodeId: string, settled: (events: number) => void, durability: Durability) {
    this.#recentKeys = recentKeys;
    this.#nodeId = nodeId;
    this.#settled = settled;
    this.#durability = durability;
  }

  journaled(entries: JournalEntry[]): void {
    const ids: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as JournalEntry;
      ids.push(journalRecordId(this.#nodeId, e.seq));
      // Entries come back in the order of `inputs`, and so of `claimed`.
      this.#recentKeys.journaledClaim(this.claimed, i, e.seq);
    }
    this.#ids = ids;
    if (this.inputs.length > 0) this.#settled(this.inputs.length);
    this.#idsWanted?.resolve(ids);
    if (this.#answer !== undefined && this.#envelopes !== undefined) this.#answer.resolve(results(this.#envelopes, undefined, ids, this.#durability));
  }

  failed(err: unknown): void {
    for (let i = 0; i < this.claimed.length; i++) this.#recentKeys.releaseClaim(this.claimed, i);
    this.#failure = { err };
    if (this.inputs.length > 0) this.#settled(this.inputs.length);
    this.#idsWanted?.reject(err);
    this.#answer?.reject(err);
  }

  /** A fresh key's place among the ids (keys repeated within the request are not fresh: each fresh key is here once). */
  indexOf(key: string): number {
    return this.claimed.keys.indexOf(key);
  }

  /** The ids of the fresh writes, in order, once journaled. */
  ids(): Promise<(string | null)[]> {
    if (this.#ids !== undefined) return Promise.resolve(this.#ids);
    if (this.#failure !== undefined) return Promise.reject(this.#failure.err);
    this.#idsWanted ??= Promise.withResolvers();
    return this.#idsWanted.promise;
  }

  /** The answer to a request without repeats: every write is fresh. */
  answer(envelopes: Envelope[]): Promise<WriteResult[]> {
    if (this.#ids !== undefined) return Promise.resolve(results(envelopes, undefined, this.#ids, this.#durability));
    if (this.#failure !== undefined) return Promise.reject(this.#failure.err);
    this.#envelopes = envelopes;
    this.#answer = Promise.withResolvers();
    return this.#answer.promise;
  }
}

/**
 * The answer to a request: a fresh write's id is the next of `ids` (null while only in memory), a
 * repeat's is its entry in `repeats` (the original's id; undefined there means a fresh write).
 */
function results(envelopes: Envelope[], repeats: readonly (string | null | undefined)[] | undefined, ids: readonly (string | null)[] | undefined, durability: Durability): WriteResult[] {
  let next = 0;
  const out: WriteResult[] = [];
  for (let i = 0; i < envelopes.length; i++) {
    const e = envelopes[i] as Envelope;
    const repeat = repeats?.[i];
    const duplicate = repeat !== undefined;
    const id = duplicate ? repeat : ids === undefined ? null : (ids[next++] ?? null);
    out.push({ id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate, durability });
  }
  return out;
}
