import { describeError } from './errors.ts';
import type { Logger } from './log.ts';
import { backoffMs } from './core/backoff.ts';
import { systemClock, type Clock } from './core/clock.ts';

/** What a pass found: `more` runs the next pass at once, `idle` waits the interval, `stop` ends the loop. */
export type PassOutcome = 'more' | 'idle' | 'stop';

export interface BackgroundLoopOptions {
  /** Names the loop in its log lines. */
  name: string;
  log: Logger;
  clock?: Clock;
  /** The wait after a pass that found nothing to do; `wake()` ends it early. */
  intervalMs: number;
  /** Waits one interval before the first pass instead of running it at start. */
  idleFirst?: boolean;
  /** One pass of the loop; it should give up early once `signal` is aborted. */
  pass(signal: AbortSignal): Promise<PassOutcome | void>;
  /**
   * A pass threw: the wait before the next one, or `stop`. Without it the failure is logged (the
   * first and then every tenth in a row, so an outage does not flood the log) and the loop backs off
   * exponentially from 100 ms up to `maxBackoffMs`, with jitter.
   */
  failed?(err: unknown, failures: number): number | 'stop';
  maxBackoffMs?: number;
  /** A pass succeeded after `failures` failed ones. */
  recovered?(failures: number): void;
}

const DEFAULT_MAX_BACKOFF_MS = 5_000;

/**
 * A long-lived background loop: start, wake (run the next pass now, also when woken mid-pass),
 * stop (waits for the pass in flight; safe to call twice). Passes never overlap. Every wait is on
 * the injected clock, so tests step time instead of sleeping.
 */
export class BackgroundLoop {
  #o: BackgroundLoopOptions;
  #clock: Clock;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #woken = false;
  #wait: AbortController | undefined;
  #failures = 0;
  #failingSince: number | undefined;
  #lastError: string | undefined;

  constructor(opts: BackgroundLoopOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? systemClock;
  }

  /** Aborted once stop() was called. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The error of the last pass while passes keep failing; undefined once one succeeds. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Failed passes in a row. */
  get failures(): number {
    return this.#failures;
  }

  /** Milliseconds the loop has failed without a break; 0 while it works. */
  failingMs(now = this.#clock.now()): number {
    return this.#failingSince === undefined ? 0 : now - this.#failingSince;
  }

  start(): void {
    if (this.#abort.signal.aborted) return;
    this.#loop ??= this.#run();
  }

  /** The next pass runs now: ends the current wait, or follows the pass in flight at once. */
  wake(): void {
    this.#woken = true;
    this.#wait?.abort();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wait?.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    if (this.#o.idleFirst === true) await this.#idle(this.#o.intervalMs);
    while (!signal.aborted) {
      let delay: number | 'stop';
      try {
        this.#woken = false;
        const outcome = await this.#o.pass(signal);
        if (this.#failures > 0) this.#o.recovered?.(this.#failures);
        this.#failures = 0;
        this.#failingSince = undefined;
        this.#lastError = undefined;
        delay = outcome === 'stop' ? 'stop' : outcome === 'more' ? 0 : this.#o.intervalMs;
      } catch (err) {
        this.#failures++;
        this.#failingSince ??= this.#clock.now();
        this.#lastError = describeError(err);
        delay = this.#o.failed?.(err, this.#failures) ?? this.#defaultFailed(this.#failures);
        // A wake during a failing pass does not cut the backoff short: new work cannot fix the failure.
        this.#woken = false;
      }
      if (delay === 'stop') break;
      if (delay > 0) await this.#idle(delay);
    }
  }

  #defaultFailed(failures: number): number {
    if (failures === 1 || failures % 10 === 0) this.#o.log.warn(`${this.#o.name} failed; will retry`, { error: this.#lastError, failures });
    return backoffMs(failures, 100, this.#o.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS);
  }

  async #idle(ms: number): Promise<void> {
    if (this.#woken || this.#abort.signal.aborted) return;
    const wait = new AbortController();
    this.#wait = wait;
    try {
      await this.#clock.sleep(ms, wait.signal);
    } finally {
      this.#wait = undefined;
    }
  }
}
