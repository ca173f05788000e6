/**
 * Time as a parameter. Loops, timeouts and backoffs take a `Clock`, so a test steps time forward
 * (`ManualClock.advance`) instead of sleeping and hoping the machine kept up.
 */
export interface Clock {
  /** Monotonic milliseconds (performance.now() on the system clock). */
  now(): number;
  /** Resolves after `ms`, or at once when `signal` is (or becomes) aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep(ms, signal) {
    if (signal?.aborted === true) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
    });
  },
};

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** A clock that moves only when told: `advance` wakes, in time order, every sleep that is due. */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: Sleeper[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.resolve();
    return new Promise((resolve) => {
      const sleeper: Sleeper = {
        at: this.#now + Math.max(0, ms),
        resolve: () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
          signal?.removeEventListener('abort', sleeper.resolve);
          resolve();
        },
      };
      signal?.addEventListener('abort', sleeper.resolve, { once: true });
      this.#sleepers.push(sleeper);
    });
  }

  /**
   * Moves time forward by `ms`, waking each due sleep in turn and letting what it started run (to
   * its next await on something other than this clock) before the next one is due.
   */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#sleepers.reduce<Sleeper | undefined>((a, s) => (a === undefined || s.at < a.at ? s : a), undefined);
      if (next === undefined || next.at > until) break;
      this.#now = Math.max(this.#now, next.at);
      next.resolve();
    }
    this.#now = until;
    await settle();
  }
}

/** Lets already-resolved promise chains run on (a few macrotask turns, so I/O callbacks get in too). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
