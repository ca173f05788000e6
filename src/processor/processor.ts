import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Sql } from '../outbox/db.ts';
import { claimPending, markSent } from '../outbox/repository.ts';
import type { Publisher } from './publisher.ts';

export interface ProcessorOptions {
  sql: Sql;
  publisher: Publisher;
  log: Logger;
  metrics: Metrics;
  batchSize: number;
  /** Idle poll interval; ingest in the same process wakes the loop earlier. */
  pollMs: number;
}

const MAX_BACKOFF_MS = 5_000;

/**
 * Claims pending outbox rows in id order, publishes each batch with one Kafka send, and marks the rows
 * sent only after Kafka acknowledged them. When Kafka or Postgres fails, rows stay pending and the loop
 * backs off, so everything is published once they are back.
 */
export class Processor {
  #opts: ProcessorOptions;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #lastError: string | undefined;

  constructor(opts: ProcessorOptions) {
    this.#opts = opts;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Ask the loop to look for rows now instead of at the end of its idle wait. */
  wake(): void {
    this.#wake?.();
  }

  /** The last publish or claim error, until a batch succeeds again. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Finishes the batch in flight, then stops. Safe to call twice. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.wake();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { log } = this.#opts;
    let backoff = 0;
    let failures = 0;
    while (!this.#abort.signal.aborted) {
      try {
        const published = await this.#step();
        if (failures > 0) log.info('publishing resumed', { after_failures: failures });
        backoff = 0;
        failures = 0;
        this.#lastError = undefined;
        if (published === 0) await this.#idle(this.#opts.pollMs);
      } catch (err) {
        failures++;
        this.#lastError = describeError(err);
        // One line for the first failure and then every tenth, so an outage does not flood the log.
        if (failures === 1 || failures % 10 === 0) {
          log.warn('publish batch failed; rows stay pending', { error: this.#lastError, failures });
        }
        this.#opts.metrics.publishFailures.inc({ reason: reasonOf(err) });
        backoff = Math.min(MAX_BACKOFF_MS, backoff === 0 ? 100 : backoff * 2);
        await this.#idle(backoff / 2 + Math.random() * (backoff / 2));
      }
    }
  }

  async #step(): Promise<number> {
    const { sql, publisher, metrics, batchSize } = this.#opts;
    const rows = await claimPending(sql, batchSize);
    if (rows.length === 0) return 0;
    const started = performance.now();
    await publisher.publish(rows);
    metrics.publishLatency.observe((performance.now() - started) / 1000);
    await markSent(sql, rows.map((r) => r.id));
    for (const row of rows) metrics.published.inc({ tenant: row.tenant_id });
    return rows.length;
  }

  #idle(ms: number): Promise<void> {
    if (this.#abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error && err.name.length > 0) return err.name;
  return 'unknown';
}
