import type { Quota } from '../tenants.ts';

/**
 * A tenant's publishing allowance: `rate` tokens a second, at most `burst` saved up, one token per
 * record. Time is a parameter so tests step a clock instead of sleeping.
 */
export class TokenBucket {
  #quota: Quota;
  #tokens: number;
  #at: number;
  #now: () => number;

  constructor(quota: Quota, now: () => number = Date.now) {
    this.#quota = quota;
    this.#now = now;
    this.#tokens = quota.burst;
    this.#at = now();
  }

  /** Applies a changed quota; tokens already saved are kept up to the new burst. */
  configure(quota: Quota): void {
    this.#refill();
    this.#quota = quota;
    this.#tokens = Math.min(this.#tokens, quota.burst);
  }

  /** Whole tokens available now. */
  available(): number {
    this.#refill();
    return Math.max(0, Math.floor(this.#tokens));
  }

  /** Holds its whole burst now: what a new bucket is. */
  get full(): boolean {
    this.#refill();
    return this.#tokens >= this.#quota.burst;
  }

  /** Spends `n` tokens; callers take at most what `available()` offered. */
  take(n: number): void {
    this.#refill();
    this.#tokens -= n;
  }

  #refill(): void {
    const now = this.#now();
    // A clock that steps back (NTP) must not mint or burn tokens.
    const elapsed = Math.max(0, now - this.#at);
    this.#at = now;
    this.#tokens = Math.min(this.#quota.burst, this.#tokens + (elapsed * this.#quota.rate) / 1000);
  }
}
