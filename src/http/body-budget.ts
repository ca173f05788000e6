import { SluiceError } from '../errors.ts';
import type { HeldBody } from '../ingest/write-path.ts';

/**
 * What an NDJSON event line counts for at least. A body's parsed events cost memory by their number
 * as well as by their bytes (~2 KiB an event beside ~4 bytes a byte), so bytes alone let bodies of
 * tiny lines hold many times the memory of the same bytes in ordinary events: an outside test's 64
 * connections of 10,000-line bodies of 33-byte lines took an ingest process to 567 MiB at the 8-MiB
 * default. Counting each line as at least this much bounds the events held at once too, while a
 * line of 512 bytes or more counts as its bytes, as before. A body's line count is capped at half
 * the budget, so that no body of bytes the configuration allows beside others (SLUICE_MAX_BODY_BYTES)
 * is made one that passes only alone.
 */
export const MIN_LINE_CHARGE = 512;

/**
 * The bytes of request bodies ingest holds at once (SLUICE_MAX_BODY_BYTES_IN_FLIGHT): a body is held
 * from the moment it has all arrived until its answer, with its parsed events beside it, and each
 * held MiB cost ~5–7 MiB of resident memory under NDJSON load. An NDJSON body counts as its bytes
 * or MIN_LINE_CHARGE a line, whichever is more. A body that does not fit is refused
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

  /** What a body of n bytes and `lines` event lines counts for. */
  #charge(n: number, lines: number): number {
    return Math.max(n, Math.min(lines * MIN_LINE_CHARGE, Math.floor(this.limit / 2)));
  }

  /** Throws `overloaded` when n bytes would not fit now; takes nothing. `lines`: an NDJSON body's event lines. What it counts for. */
  check(n: number, lines = 0): number {
    const held = this.#held.bytes;
    const charge = this.#charge(n, lines);
    if (held > 0 && held + charge > this.limit) {
      const counted = charge > n ? ` (${lines} lines, counted as ${charge}: ${MIN_LINE_CHARGE} bytes a line at least)` : '';
      throw new SluiceError(
        'overloaded',
        `sluice holds ${held} bytes of request bodies and this one of ${n}${counted} would pass SLUICE_MAX_BODY_BYTES_IN_FLIGHT=${this.limit}; retry shortly`,
        { retryAfter: 1 },
      );
    }
    return charge;
  }

  /** Takes n bytes (an NDJSON body's `lines` at MIN_LINE_CHARGE at least), or throws `overloaded` with nothing taken. */
  take(n: number, lines = 0): BodyHold {
    const charge = this.check(n, lines);
    this.#held.bytes += charge;
    return new BodyHold(this.#held, charge);
  }
}

/**
 * The lines of an NDJSON body that hold an event, as parseEvents sees them: a line of JSON white
 * space alone (space, tab, CR) is skipped there and not counted here. Only each line's leading white
 * space is looked at; newlines are found natively.
 */
export function eventLineCount(body: Uint8Array): number {
  let lines = 0;
  for (let start = 0; start < body.byteLength; ) {
    let at = start;
    while (at < body.byteLength && (body[at] === 0x20 || body[at] === 0x09 || body[at] === 0x0d)) at++;
    if (at === body.byteLength) break;
    if (body[at] !== 0x0a) lines++;
    const newline = body.indexOf(0x0a, at);
    if (newline === -1) break;
    start = newline + 1;
  }
  return lines;
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
