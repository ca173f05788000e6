import { ManualClock } from '../../src/core/clock.ts';

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
