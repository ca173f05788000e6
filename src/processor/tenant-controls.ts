import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Tenants } from '../tenants.ts';
import { BREAKER_GAUGE, Breaker, type BreakerState } from './breaker.ts';
import { TokenBucket } from './token-bucket.ts';

export interface TenantSnapshot {
  breaker: BreakerState;
  /** Whole quota tokens available now. */
  tokens: number;
}

/**
 * Tenants with state kept before any is let go. Each costs ~0.5–1 KB (an outside test: a processor at
 * 448 MiB after publishing one record each for 456,000 tenants, 169 MiB for 4 tenants).
 */
export const CONTROLS_SWEEP_FLOOR = 10_000;

/**
 * The per-tenant runtime state of one processor instance: a token bucket and a circuit breaker per
 * tenant, created on first use from the tenant's policy and re-configured after a tenants reload.
 * Breaker transitions are logged and exported as `sluice_breaker_state`.
 *
 * A bucket is made only when its tenant spends tokens and a breaker only when it counts a failure;
 * reading either (may it publish, how many tokens) makes nothing, so a poll over many waiting tenants
 * allocates nothing for them. And only state that differs from a fresh one is kept for good: once
 * more than CONTROLS_SWEEP_FLOOR tenants (and twice as many as after the last sweep) have state, full
 * buckets and closed breakers with no failures counted are let go, to be made again, the same, on
 * next use. So what is held follows the tenants whose quota or breaker is in play, not every tenant
 * that ever published. No bucket or breaker leaves this class.
 */
export class TenantControls {
  #tenants: Tenants;
  #metrics: Metrics;
  #log: Logger;
  #now: () => number;
  #breakers = new Map<string, Breaker>();
  #buckets = new Map<string, TokenBucket>();
  #generation: number;
  #sweepAt = CONTROLS_SWEEP_FLOOR;

  constructor(tenants: Tenants, metrics: Metrics, log: Logger, now: () => number = Date.now) {
    this.#tenants = tenants;
    this.#metrics = metrics;
    this.#log = log;
    this.#now = now;
    this.#generation = tenants.generation;
  }

  /** Whether the tenant may publish now: its breaker closed, or half-open for the probe. */
  allows(tenant: string): boolean {
    this.#refresh();
    const breaker = this.#breakers.get(tenant);
    if (breaker !== undefined) return breaker.allows();
    // Asked by each poll of a tenant with rows waiting: it shows its closed breaker from then on.
    this.#showClosed(tenant, this.#tenants.currentLabel(tenant));
    return true;
  }

  breakerState(tenant: string): BreakerState {
    this.#refresh();
    return this.#breakers.get(tenant)?.state ?? 'closed';
  }

  /** Whole quota tokens the tenant may spend now. */
  available(tenant: string): number {
    this.#refresh();
    return this.#buckets.get(tenant)?.available() ?? Math.floor(this.#tenants.policy(tenant).quota.burst);
  }

  take(tenant: string, n: number): void {
    this.#bucket(tenant).take(n);
  }

  /** A published batch: closes a half-open breaker. A tenant without one has nothing to change. */
  success(tenant: string): void {
    this.#refresh();
    this.#breakers.get(tenant)?.success();
  }

  failure(tenant: string): void {
    this.#breaker(tenant).failure();
  }

  snapshot(tenant: string): TenantSnapshot {
    return { breaker: this.breakerState(tenant), tokens: this.available(tenant) };
  }

  resetBreaker(tenant: string): void {
    this.#refresh();
    this.#breakers.get(tenant)?.reset();
  }

  /** These tenants' state, after closing `reset`'s breaker: what the admin API shows. */
  snapshots(tenants: readonly string[], reset?: string): Record<string, TenantSnapshot> {
    if (reset !== undefined) this.resetBreaker(reset);
    return Object.fromEntries(tenants.map((t) => [t, this.snapshot(t)]));
  }

  /** Made only when the tenant's breaker counts a failure: reading state makes none. */
  #breaker(tenant: string): Breaker {
    this.#refresh();
    let breaker = this.#breakers.get(tenant);
    if (breaker === undefined) {
      const label = this.#tenants.metricLabel(tenant);
      breaker = new Breaker(this.#tenants.policy(tenant).breaker, this.#now, (t) => {
        this.#log.warn('breaker state changed', { tenant, from: t.from, to: t.to, reason: t.reason });
        this.#metrics.breakerState.set({ tenant: label }, BREAKER_GAUGE[t.to]);
      });
      this.#showClosed(tenant, label);
      this.#sweepWhenLarge();
      this.#breakers.set(tenant, breaker);
    }
    return breaker;
  }

  /** Made only when the tenant spends tokens. */
  #bucket(tenant: string): TokenBucket {
    this.#refresh();
    let bucket = this.#buckets.get(tenant);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.#tenants.policy(tenant).quota, this.#now);
      this.#sweepWhenLarge();
      this.#buckets.set(tenant, bucket);
    }
    return bucket;
  }

  /**
   * A tenant without an open breaker shows 0 under its own label. Not under a shared one (`~other`):
   * that would hide another such tenant's open breaker. A gauge set, and no state made: the poll asks
   * this of every waiting tenant, most of them under `~other` in a backlog of many.
   */
  #showClosed(tenant: string, label: string): void {
    if (label === tenant) this.#metrics.breakerState.set({ tenant: label }, BREAKER_GAUGE.closed);
  }

  /** Tenants with a bucket or a breaker held now (each counted once a kind). */
  get held(): number {
    return Math.max(this.#buckets.size, this.#breakers.size);
  }

  /**
   * Lets go of the state a fresh bucket or breaker would have. Run before a new one is added, so the
   * one being handed out is never let go under its caller; amortized O(1) a new tenant, since the
   * next sweep waits for the held state to double.
   */
  #sweepWhenLarge(): void {
    if (this.held < this.#sweepAt) return;
    for (const [tenant, breaker] of this.#breakers) if (breaker.pristine) this.#breakers.delete(tenant);
    for (const [tenant, bucket] of this.#buckets) if (bucket.full) this.#buckets.delete(tenant);
    this.#sweepAt = Math.max(CONTROLS_SWEEP_FLOOR, 2 * this.held);
  }

  /** After a tenants reload, existing buckets and breakers take the new policies (state is kept). */
  #refresh(): void {
    if (this.#generation === this.#tenants.generation) return;
    this.#generation = this.#tenants.generation;
    for (const [tenant, b] of this.#breakers) b.configure(this.#tenants.policy(tenant).breaker);
    for (const [tenant, b] of this.#buckets) b.configure(this.#tenants.policy(tenant).quota);
  }
}
