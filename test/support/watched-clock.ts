import { ManualClock, systemClock, type Clock } from '../../src/core/clock.ts';

/**
 * A ManualClock that counts the sleeps not yet over, so a test advances time only once the code
 * under test is waiting on it (a timeout armed), not while it is still busy with real I/O.
 */
export class WatchedClock extends ManualClock {
  #sleeping = 0;

  get sleeping(): number {
    return this.#sleeping;
  }

  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.#sleeping++;
    return super.sleep(ms, signal).finally(() => {
      this.#sleeping--;
    });
  }
}

/**
 * The system clock, counting the sleeps begun of each length: a test sees a loop settle into its
 * idle wait (its interval armed) as an event, instead of sleeping and hoping it got there. Time
 * itself runs as usual, so retries and backoffs of real I/O still end.
 */
export class CountingClock implements Clock {
  #begun = new Map<number, number>();

  now(): number {
    return systemClock.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.#begun.set(ms, this.begun(ms) + 1);
    return systemClock.sleep(ms, signal);
  }

  /** Sleeps of `ms` begun so far. */
  begun(ms: number): number {
    return this.#begun.get(ms) ?? 0;
  }
}
