/**
 * A seq that only moves up, and the way one stage hands the next what it made durable: the journal's
 * fsynced seq, the forwarder's checkpoint. A reader awaits `next(seen)` or iterates `changes()`
 * (coalesced: a slow reader sees the newest value, not every step), nats.js style, instead of being
 * called back.
 */
export class Watermark {
  #value: number;
  #waiters = new Set<() => void>();

  constructor(value = 0) {
    this.#value = value;
  }

  get value(): number {
    return this.#value;
  }

  advance(to: number): void {
    if (to <= this.#value) return;
    this.#value = to;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  /** Resolves with the value once it is past `after`, or at once when `signal` is (or becomes) aborted. */
  next(after: number, signal?: AbortSignal): Promise<number> {
    if (this.#value > after || signal?.aborted === true) return Promise.resolve(this.#value);
    // The value is read when the waiter resumes, not when it was woken: the newest one.
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    }).then(() => this.#value);
  }

  /** Each new value after the current one, until `signal` is aborted. */
  async *changes(signal: AbortSignal): AsyncGenerator<number> {
    let seen = this.#value;
    for (;;) {
      const v = await this.next(seen, signal);
      if (signal.aborted) return;
      seen = v;
      yield v;
    }
  }
}

/** Runs `act` on each change of `mark` until `signal` is aborted: one stage following another. */
export function follow(mark: Watermark, signal: AbortSignal, act: (value: number) => void): void {
  void (async () => {
    for await (const v of mark.changes(signal)) act(v);
  })();
}
