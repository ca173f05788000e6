import { SluiceError } from '../errors.ts';
import type { HeldBody } from '../ingest/write-path.ts';

/**
 * The bytes of request bodies ingest holds at once (SLUICE_MAX_BODY_BYTES_IN_FLIGHT): a body is held
 * from the moment it has all arrived until its answer, with its parsed events beside it, and each
 * held MiB cost ~5–7 MiB of resident memory under NDJSON load. A body that does not fit is refused
 * (503 `overloaded`), before it is read when its declared length already does not, except when
 * nothing else is held (config keeps the limit at SLUICE_MAX_BODY_BYTES or more, since a larger body
 * alone would have every other request refused while held). A background write keeps its body
 * counted past the answer, until its events are journaled (BodyHold.keep).
 */
export class BodyBudget {
  readonly limit: number;
  /** Read by the sluice_ingest_body_bytes gauge at each scrape. */
  readonly #held: { bytes: number };

  constructor(limit: number, held: { bytes: number } = { bytes: 0 }) {
    this.limit = limit;
    this.#held = held;
  }

  get held(): number {
    return this.#held.bytes;
  }

  /** Throws `overloaded` when n bytes would not fit now; takes nothing. */
  check(n: number): void {
    const held = this.#held.bytes;
    if (held > 0 && held + n > this.limit) {
      throw new SluiceError('overloaded', `sluice holds ${held} bytes of request bodies and this one of ${n} would pass SLUICE_MAX_BODY_BYTES_IN_FLIGHT=${this.limit}; retry shortly`, {
        retryAfter: 1,
      });
    }
  }

  /** Takes n bytes, or throws `overloaded` with nothing taken. */
  take(n: number): BodyHold {
    this.check(n);
    this.#held.bytes += n;
    return new BodyHold(this.#held, n);
  }
}

/** One body's bytes in the budget, given back once: by its request after the answer, or, kept, later. */
export class BodyHold implements HeldBody {
  readonly #held: { bytes: number };
  #bytes: number;
  #kept = false;

  constructor(held: { bytes: number }, bytes: number) {
    this.#held = held;
    this.#bytes = bytes;
  }

  /** The request is answered: gives the bytes back, unless the write path kept them. */
  release(): void {
    if (!this.#kept) this.#free();
  }

  keep(): () => void {
    this.#kept = true;
    return () => this.#free();
  }

  #free(): void {
    this.#held.bytes -= this.#bytes;
    this.#bytes = 0;
  }
}
