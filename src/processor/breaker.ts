import type { BreakerPolicy } from '../tenants.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';

/** The value of the sluice_breaker_state gauge. */
export const BREAKER_GAUGE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

export interface BreakerTransition {
  from: BreakerState;
  to: BreakerState;
  reason: string;
}

/**
 * A tenant's circuit breaker: closed → open after `failureThreshold` consecutive failed publishes →
 * half-open once `resetMs` passed → the next batch is the probe: closed if it succeeds, open again if
 * not. While open the tenant is skipped, so its rows wait instead of being retried in a loop.
 */
export class Breaker {
  #policy: BreakerPolicy;
  #now: () => number;
  #onTransition: (t: BreakerTransition) => void;
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;

  constructor(policy: BreakerPolicy, now: () => number = Date.now, onTransition: (t: BreakerTransition) => void = () => {}) {
    this.#policy = policy;
    this.#now = now;
    this.#onTransition = onTransition;
  }

  configure(policy: BreakerPolicy): void {
    this.#policy = policy;
  }

  /** The state now; an open breaker whose reset time passed turns half-open when read. */
  get state(): BreakerState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.#policy.resetMs) {
      this.#move('half_open', `${this.#policy.resetMs} ms passed since it opened`);
    }
    return this.#state;
  }

  /** Closed with no failure counted: what a new breaker is. */
  get pristine(): boolean {
    return this.#state === 'closed' && this.#failures === 0;
  }

  /** Whether the tenant may publish: closed, or half-open (its next batch is the probe). */
  allows(): boolean {
    return this.state !== 'open';
  }

  success(): void {
    this.#failures = 0;
    if (this.state !== 'closed') this.#move('closed', 'probe batch published');
  }

  failure(): void {
    const state = this.state;
    if (state === 'open') return;
    this.#failures++;
    if (state === 'half_open') {
      this.#open('probe batch failed');
    } else if (this.#failures >= this.#policy.failureThreshold) {
      this.#open(`${this.#failures} consecutive failed publishes`);
    }
  }

  /** An operator closes the breaker by hand (admin API); the next batch is published normally. */
  reset(): void {
    this.#failures = 0;
    if (this.#state !== 'closed') this.#move('closed', 'reset by an operator');
  }

  #open(reason: string): void {
    this.#openedAt = this.#now();
    this.#move('open', reason);
  }

  #move(to: BreakerState, reason: string): void {
    const from = this.#state;
    this.#state = to;
    this.#onTransition({ from, to, reason });
  }
}
