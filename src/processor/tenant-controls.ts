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
 * Only state that differs from a fresh one is kept for good: once more than CONTROLS_SWEEP_FLOOR
 * tenants (and twice as many as after the last sweep) have state, a full bucket and a closed breaker
 * with no failures counted are let go, to be made again, the same, on next use. So what is held
 * follows the tenants whose quota or breaker is in play, not every tenant that ever published.
 * Callers take a tenant's bucket or breaker afresh at each use rather than holding one across a wait.
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

  breaker(tenant: string): Breaker {
    this.#refresh();
    let breaker = this.#breakers.get(tenant);
    if (breaker === undefined) {
      const label = this.#tenants.metricLabel(tenant);
      breaker = new Breaker(this.#tenants.policy(tenant).breaker, this.#now, (t) => {
        this.#log.warn('breaker state changed', { tenant, from: t.from, to: t.to, reason: t.reason });
        this.#metrics.breakerState.set({ tenant: label }, BREAKER_GAUGE[t.to]);
      });
      this.#metrics.breakerState.set({ tenant: label }, BREAKER_GAUGE.closed);
      this.#sweepWhenLarge();
      this.#breakers.set(tenant, breaker);
    }
    return breaker;
  }

  bucket(tenant: string): TokenBucket {
    this.#refresh();
    let bucket = this.#buckets.get(tenant);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.#tenants.policy(tenant).quota, this.#now);
      this.#sweepWhenLarge();
      this.#buckets.set(tenant, bucket);
    }
    return bucket;
  }

  snapshot(tenant: string): TenantSnapshot {
    return { breaker: this.breaker(tenant).state, tokens: this.bucket(tenant).available() };
  }

  resetBreaker(tenant: string): void {
    this.breaker(tenant).reset();
  }

  /** These tenants' state, after closing `reset`'s breaker: what the admin API shows. */
  snapshots(tenants: readonly string[], reset?: string): Record<string, TenantSnapshot> {
    if (reset !== undefined) this.resetBreaker(reset);
    return Object.fromEntries(tenants.map((t) => [t, this.snapshot(t)]));
  }

  /** Buckets and breakers held now. */
  get held(): number {
    return this.#buckets.size + this.#breakers.size;
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
