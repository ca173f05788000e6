import { systemClock, type Clock } from '../core/clock.ts';
import { type Envelope, journalRecordId } from '../core/record.ts';
import { SluiceError, describeError } from '../errors.ts';
import { Watermark } from '../core/watermark.ts';
import type { ClaimedKey } from './recent-keys.ts';
import type { Durability, WritePath, WritePathOptions, WriteResult } from './write-path.ts';

export type AheadWritesOptions = Pick<WritePathOptions, 'nodeId' | 'journal' | 'progress' | 'recentKeys' | 'maxUnforwarded' | 'log' | 'clock'> & {
  /** When a write is answered: after its journal fsync (fast_ack), or once it is queued (background). */
  answer: 'journaled' | 'queued';
};

const BACKGROUND_RETRY_MAX_MS = 5_000;
/** How long a write waits for room under SLUICE_MAX_UNFORWARDED. */
const ROOM_WAIT_MS = 2_000;

type Settle = { resolve: (ids: (string | null)[]) => void; reject: (err: unknown) => void };

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

  write(envelopes: Envelope[]): Promise<WriteResult[]> {
    const building = this.#o.recentKeys.building;
    // A key the half-built index lacks may be a repeat of a journal line not read yet: answered once it is read.
    if (building !== undefined && envelopes.some((e) => !this.#o.recentKeys.has(e.tenant_id, e.dedupe_key))) return building.then(() => this.write(envelopes));
    if (this.#waiting() + envelopes.length <= this.#o.maxUnforwarded) return this.#writeAhead(envelopes);
    // Only past the limit is it worth looking keys up twice: a repeat of a held key takes no room and
    // is answered as a duplicate however full the backlog is.
    const fresh = envelopes.filter((e) => !this.#o.recentKeys.has(e.tenant_id, e.dedupe_key)).length;
    if (fresh === 0 || this.#waiting() + fresh <= this.#o.maxUnforwarded) return this.#writeAhead(envelopes);
    return this.#roomFor(fresh).then(() => this.#writeAhead(envelopes));
  }

  /** Resolves once every background write is journaled. */
  async drain(): Promise<void> {
    while (this.#background.size > 0) await Promise.all(this.#background);
  }

  #waiting(): number {
    return this.#o.progress.unforwarded + this.#inFlight;
  }

  /**
   * Past the limit a write waits (a little) for the forwarder rather than being refused at once:
   * under sustained overload ingest then runs at the outbox's pace, and requests parsed only to be
   * refused do not eat the CPU the forwarder needs.
   */
  async #roomFor(events: number): Promise<void> {
    const deadline = this.#clock.now() + ROOM_WAIT_MS;
    const { forwarded } = this.#o.progress;
    while (this.#waiting() + events > this.#o.maxUnforwarded) {
      const left = deadline - this.#clock.now();
      if (left <= 0) {
        throw new SluiceError(
          'backlog_full',
          `${this.#waiting()} journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=${this.#o.maxUnforwarded}); retry shortly`,
          { retryAfter: 1 },
        );
      }
      const waited = new AbortController();
      await Promise.race([forwarded.next(forwarded.value, waited.signal), this.#left.next(this.#left.value, waited.signal), this.#clock.sleep(left, waited.signal)]);
      waited.abort();
    }
  }

  async #writeAhead(envelopes: Envelope[]): Promise<WriteResult[]> {
    const { recentKeys, answer } = this.#o;
    const durability: Durability = answer === 'journaled' ? 'journal' : 'memory';
    const fresh: Envelope[] = [];
    // What claim computed for each fresh key: the journaled key is registered without joining and hashing it again.
    const claimed: ClaimedKey[] = [];
    const originals: (Promise<string | null> | undefined)[] = [];
    let settle!: Settle;
    const ids = new Promise<(string | null)[]>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Awaited only if a repeat arrives; a failure reaches that repeat, not the unhandled-rejection hook.
    ids.catch(() => {});
    for (const e of envelopes) {
      const original = recentKeys.claim(e.tenant_id, e.dedupe_key, { ids, index: fresh.length }, claimed);
      originals.push(original);
      if (original === undefined) fresh.push(e);
    }

    const journaled = this.#journal(fresh, claimed, settle);
    let freshIds: (string | null)[];
    if (answer === 'journaled') {
      freshIds = await journaled;
    } else {
      freshIds = fresh.map(() => null);
      this.#trackBackground(journaled);
    }
    let next = 0;
    const results: WriteResult[] = [];
    for (let i = 0; i < envelopes.length; i++) {
      const e = envelopes[i] as Envelope;
      const original = originals[i];
      const id = original === undefined ? (freshIds[next++] ?? null) : answer === 'journaled' ? await original : null;
      results.push({ id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: original !== undefined, durability });
    }
    return results;
  }

  /** Appends fresh writes to the journal; a background write retries until it succeeds or sluice stops. */
  async #journal(fresh: Envelope[], claimed: ClaimedKey[], settle: Settle): Promise<(string | null)[]> {
    if (fresh.length === 0) {
      settle.resolve([]);
      return [];
    }
    const { journal, recentKeys, nodeId, answer, log } = this.#o;
    this.#inFlight += fresh.length;
    try {
      let backoff = 100;
      for (;;) {
        try {
          const entries = await journal.append(fresh);
          const ids = entries.map((e) => journalRecordId(nodeId, e.seq));
          // Entries come back in the order of `fresh`, and so of `claimed`.
          entries.forEach((e, i) => recentKeys.journaledClaim(claimed[i] as ClaimedKey, e.seq));
          settle.resolve(ids);
          return ids;
        } catch (err) {
          const stopping = err instanceof SluiceError && err.code === 'shutting_down';
          if (answer === 'journaled' || stopping) throw err;
          log.error('background write not journaled yet; retrying', { error: describeError(err), events: fresh.length });
          await this.#clock.sleep(backoff);
          backoff = Math.min(BACKGROUND_RETRY_MAX_MS, backoff * 2);
        }
      }
    } catch (err) {
      for (const c of claimed) recentKeys.releaseClaim(c);
      settle.reject(err);
      if (answer === 'queued') log.error('background writes lost: journal unavailable at shutdown', { events: fresh.length });
      throw err;
    } finally {
      this.#inFlight -= fresh.length;
      this.#left.advance(this.#left.value + 1);
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
