import { BackgroundLoop } from '../background-loop.ts';
import type { Clock } from '../core/clock.ts';
import { describeError, SluiceError } from '../errors.ts';
import type { Envelope } from '../core/record.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Tenants } from '../tenants.ts';

export interface TenantPendingLimitOptions {
  /** Pending rows per tenant, from the outbox. */
  pending(): Promise<Map<string, number>>;
  tenants: Tenants;
  metrics: Metrics;
  log: Logger;
  refreshMs: number;
  clock?: Clock;
}

const ADMITTED: Promise<void> = Promise.resolve();

/**
 * Per-tenant backpressure: a tenant whose pending outbox rows passed its `max_pending` is answered 429
 * backlog_full (the code it shares with AheadWrites' node-wide SLUICE_MAX_UNFORWARDED refusal), with
 * a Retry-After estimated from how long its quota needs to drain the excess.
 * Counts come from the outbox every `refreshMs`, plus what this process accepted since, so a burst
 * cannot overshoot by more than one refresh interval of other instances' writes. A request admitted
 * counts at once, until its write is answered (`release`): counted only once written, 20 concurrent
 * batches of 500 lines all passed a limit of 50 (an outside test). So a tenant under its limit can
 * pass it by one request's events, no more, in each process.
 */
export class TenantPendingLimit {
  #o: TenantPendingLimitOptions;
  #counts = new Map<string, number>();
  /** Events of admitted requests whose writes are not answered yet, by tenant. */
  #admitted = new Map<string, number>();
  #loop: BackgroundLoop;
  #failing = false;

  constructor(opts: TenantPendingLimitOptions) {
    this.#o = opts;
    this.#loop = new BackgroundLoop({
      name: 'backlog refresh',
      log: opts.log,
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      intervalMs: opts.refreshMs,
      idleFirst: true,
      pass: () => this.#refresh(),
    });
  }

  /** Counts once before the first write is admitted, then every `refreshMs`. */
  async start(): Promise<void> {
    await this.#refresh();
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /**
   * Throws backlog_full when any tenant of the request is over its limit; nothing is written then.
   * A request repeating only keys the node holds (`held`) goes through all the same: it can only be
   * answered 200 `duplicate`, and refusing it would tell a client retrying an acknowledged write to
   * keep retrying. Only requests over the limit pay for that look-up. Admitted, the request's events
   * count until `release`.
   */
  admit(envelopes: readonly Envelope[], held: (envelopes: readonly Envelope[]) => Promise<boolean>): Promise<void> {
    const refused = this.#refusal(envelopes);
    // Not an async function: the common case (under the limit) costs no promise of its own.
    if (refused === undefined) {
      this.#count(envelopes, 1);
      return ADMITTED;
    }
    return held(envelopes)
      .catch(() => false)
      .then((holds) => {
        if (!holds) this.#refuse(refused);
        this.#count(envelopes, 1);
      });
  }

  /** An admitted request's write was answered or failed: what it wrote counts by `accepted` instead. */
  release(envelopes: readonly Envelope[]): void {
    this.#count(envelopes, -1);
  }

  #count(envelopes: readonly Envelope[], sign: 1 | -1): void {
    let run = 0;
    for (let i = 0; i < envelopes.length; i++) {
      const tenant = (envelopes[i] as Envelope).tenant_id;
      run++;
      if (envelopes[i + 1]?.tenant_id === tenant) continue;
      const n = (this.#admitted.get(tenant) ?? 0) + sign * run;
      if (n === 0) this.#admitted.delete(tenant);
      else this.#admitted.set(tenant, n);
      run = 0;
    }
  }

  #refusal(envelopes: readonly Envelope[]): { tenant: string; pending: number } | undefined {
    let checked: string | undefined;
    for (const e of envelopes) {
      // A batch is mostly one tenant's: each run of it is looked up once.
      if (e.tenant_id === checked) continue;
      checked = e.tenant_id;
      const pending = (this.#counts.get(checked) ?? 0) + (this.#admitted.get(checked) ?? 0);
      if (pending >= this.#o.tenants.policy(checked).maxPending) return { tenant: checked, pending };
    }
    return undefined;
  }

  #refuse({ tenant, pending }: { tenant: string; pending: number }): never {
    const policy = this.#o.tenants.policy(tenant);
    this.#o.metrics.backlogRejected.inc({ tenant: this.#o.tenants.metricLabel(tenant) });
    const excess = pending - policy.maxPending + 1;
    throw new SluiceError('backlog_full', `tenant ${tenant} has ${pending} records waiting, over its max_pending of ${policy.maxPending}; retry later`, {
      retryAfter: Math.min(3_600, Math.max(1, Math.ceil(excess / policy.quota.rate))),
      details: [{ path: 'tenant_id', message: `pending ${pending} >= max_pending ${policy.maxPending}` }],
    });
  }

  /** Accepted writes count against the limit at once, before the next refresh sees them. */
  accepted(tenant: string, n: number): void {
    this.#counts.set(tenant, (this.#counts.get(tenant) ?? 0) + n);
  }

  async #refresh(): Promise<void> {
    try {
      this.#counts = await this.#o.pending();
      this.#failing = false;
    } catch (err) {
      // Keep the last counts: the outbox being down is reported by /readyz, not by refusing writes.
      if (!this.#failing) this.#o.log.warn('backlog counts not refreshed', { error: describeError(err) });
      this.#failing = true;
    }
  }
}
