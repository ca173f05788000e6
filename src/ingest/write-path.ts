import type { Envelope } from '../envelope.ts';
import { SluiceError, describeError } from '../errors.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Sql } from '../outbox/db.ts';
import { partitionOf } from '../outbox/partition.ts';
import { insertRows } from '../outbox/repository.ts';

export type Durability = 'outbox' | 'journal' | 'memory';

export interface WriteResult {
  id: string;
  tenant_id: string;
  dedupe_key: string;
  duplicate: boolean;
  durability: Durability;
}

export interface WritePathOptions {
  journal: JournalWriter;
  sql: Sql;
  partitions: number;
  maxBatch: number;
  log: Logger;
  /** Called after rows were committed, so an in-process processor can start at once. */
  onCommitted?: () => void;
}

interface Waiting {
  envelopes: Envelope[];
  resolve: (results: WriteResult[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Sync write mode: a request is answered after its journal fsync and its outbox commit. Requests that
 * arrive while a batch is in flight are gathered into the next one, which costs one fsync and one
 * multi-row INSERT however many requests it holds.
 */
export class WritePath {
  #opts: WritePathOptions;
  #queue: Waiting[] = [];
  #running: Promise<void> | undefined;
  #inFlight = 0;

  constructor(opts: WritePathOptions) {
    this.#opts = opts;
  }

  /** Writes currently accepted but not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  write(envelopes: Envelope[]): Promise<WriteResult[]> {
    this.#inFlight += envelopes.length;
    return new Promise<WriteResult[]>((resolve, reject) => {
      this.#queue.push({ envelopes, resolve, reject });
      this.#running ??= this.#drain();
    }).finally(() => {
      this.#inFlight -= envelopes.length;
    });
  }

  /** Resolves once every accepted write has been answered. */
  async drain(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #drain(): Promise<void> {
    for (;;) {
      const batch = this.#take();
      if (batch.length === 0) {
        // Cleared in the same turn as the empty check, so no write can be left waiting.
        this.#running = undefined;
        return;
      }
      await this.#commit(batch);
    }
  }

  #take(): Waiting[] {
    const batch: Waiting[] = [];
    let events = 0;
    while (this.#queue.length > 0) {
      const next = this.#queue[0];
      if (next === undefined) break;
      if (batch.length > 0 && events + next.envelopes.length > this.#opts.maxBatch) break;
      this.#queue.shift();
      batch.push(next);
      events += next.envelopes.length;
    }
    return batch;
  }

  async #commit(batch: Waiting[]): Promise<void> {
    const envelopes = batch.flatMap((w) => w.envelopes);
    try {
      const entries = await this.#opts.journal.append(envelopes);
      let results;
      try {
        results = await insertRows(
          this.#opts.sql,
          entries.map((e) => ({
            tenant_id: e.tenant_id,
            dedupe_key: e.dedupe_key,
            partition: partitionOf(e.tenant_id, this.#opts.partitions),
            topic: e.topic,
            payload: e.payload,
            headers: e.headers,
            request_id: e.request_id,
            traceparent: e.traceparent,
            ingested_at: e.ts,
          })),
        );
      } catch (err) {
        this.#opts.log.error('outbox insert failed', { error: describeError(err), events: envelopes.length });
        throw new SluiceError('outbox_unavailable', 'the outbox could not be written; retry with the same dedupe_key', {
          cause: err,
          retryAfter: 1,
        });
      }
      this.#opts.onCommitted?.();
      let offset = 0;
      for (const w of batch) {
        const mine = results.slice(offset, offset + w.envelopes.length);
        offset += w.envelopes.length;
        w.resolve(
          mine.map((r, i) => {
            const e = w.envelopes[i] as Envelope;
            return { id: r.id, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: r.duplicate, durability: 'outbox' };
          }),
        );
      }
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }
}
