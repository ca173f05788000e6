import type { JournalEntry } from '../core/record.ts';

/**
 * Serializes an entry with the documented field order, so `jq` output reads naturally. The payload is
 * spliced in as the client's own text, so the line holds it byte for byte. A payload with a line
 * break between its tokens cannot sit in one JSONL line as is: it is carried as a JSON string,
 * `payload_text`, instead (still byte for byte; `jq -r .payload_text` gives it back). The writer
 * builds its lines with LineBuffer, which this is written with: one definition of the format.
 */
export function formatEntry(e: JournalEntry): string {
  const line = new LineBuffer(256);
  line.add(e);
  return line.bytes().toString();
}

/**
 * A group commit's lines, written straight into one buffer kept from commit to commit: the same
 * bytes as JSON.stringify of the entry's fields in order (each piece is JSON.stringify of its value),
 * without building that object, a string per line (or per piece but the rare escaped ones), or a
 * fresh buffer per commit.
 */
export class LineBuffer {
  #buffer: Buffer;
  #length = 0;

  constructor(initialBytes = 64 * 1024) {
    this.#buffer = Buffer.allocUnsafe(initialBytes);
  }

  /** Starts the next group: what `bytes` gave before is overwritten from here on. */
  reset(): void {
    this.#length = 0;
    // One huge group (a backlog flushed at once) should not pin its size for good.
    if (this.#buffer.length > KEPT_BYTES) this.#buffer = Buffer.allocUnsafe(KEPT_BYTES);
  }

  /** The lines added since `reset`; valid until the next `reset`. */
  bytes(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }

  /** Bytes added since `reset`. */
  get length(): number {
    return this.#length;
  }

  /** Takes back the lines added after the first `length` bytes. */
  cut(length: number): void {
    this.#length = Math.min(length, this.#length);
  }

  /** Appends the line of `e`; returns the offset just past it. */
  add(e: JournalEntry): number {
    const ts = TS.of(e.ts);
    const tenant = TENANT.of(e.tenant_id);
    const topic = TOPIC.of(e.topic);
    const request = REQUEST.of(e.request_id);
    const key = plainString(e.dedupe_key) ? undefined : JSON.stringify(e.dedupe_key);
    const headers = hasMembers(e.headers) ? JSON.stringify(e.headers) : undefined;
    const payloadText = e.payload.includes('\n') || e.payload.includes('\r');
    const payload = payloadText ? JSON.stringify(e.payload) : e.payload;
    const trace = e.traceparent === undefined ? undefined : JSON.stringify(e.traceparent);
    // Bytes at most: the seq's digits counted as 16, the key's quotes 2, and 3 bytes for each character of UTF-8.
    const most =
      FIXED_BYTES + 18 + ts.length + tenant.length + topic.length + request.length + 3 * ((key ?? e.dedupe_key).length + (headers?.length ?? 0) + payload.length + (trace === undefined ? 0 : trace.length));
    this.#room(most);
    // Few native calls a line: pieces known as bytes are copied, an ASCII key is written by hand,
    // and only the payload (and rare escaped pieces) go through the encoder.
    const b = this.#buffer;
    b.set(SEQ, this.#length);
    let i = writeDigits(b, this.#length + SEQ.length, e.seq);
    b.set(ts, i);
    i += ts.length;
    b.set(tenant, i);
    i += tenant.length;
    b.set(DEDUPE_KEY, i);
    i += DEDUPE_KEY.length;
    if (key === undefined) {
      b[i++] = 0x22;
      const k = e.dedupe_key;
      for (let j = 0; j < k.length; j++) b[i++] = k.charCodeAt(j);
      b[i++] = 0x22;
    } else {
      i += b.write(key, i);
    }
    b.set(topic, i);
    i += topic.length;
    b.set(request, i);
    i += request.length;
    if (headers === undefined) {
      b.set(payloadText ? NO_HEADERS_PAYLOAD_TEXT : NO_HEADERS_PAYLOAD, i);
      i += payloadText ? NO_HEADERS_PAYLOAD_TEXT.length : NO_HEADERS_PAYLOAD.length;
    } else {
      b.set(HEADERS, i);
      i += HEADERS.length;
      i += b.write(headers, i);
      b.set(payloadText ? PAYLOAD_TEXT : PAYLOAD, i);
      i += payloadText ? PAYLOAD_TEXT.length : PAYLOAD.length;
    }
    i += b.write(payload, i);
    if (trace !== undefined) {
      b.set(TRACEPARENT, i);
      i += TRACEPARENT.length;
      i += b.write(trace, i);
    }
    b[i++] = 0x7d;
    b[i++] = 0x0a;
    this.#length = i;
    return i;
  }

  #room(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#length + bytes));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}

/** The most a LineBuffer keeps between groups. */
const KEPT_BYTES = 4 * 1024 * 1024;

const SEQ = Buffer.from('{"seq":');
const DEDUPE_KEY = Buffer.from(',"dedupe_key":');
const HEADERS = Buffer.from(',"headers":');
const PAYLOAD = Buffer.from(',"payload":');
const PAYLOAD_TEXT = Buffer.from(',"payload_text":');
const NO_HEADERS_PAYLOAD = Buffer.from(',"headers":{},"payload":');
const NO_HEADERS_PAYLOAD_TEXT = Buffer.from(',"headers":{},"payload_text":');
const TRACEPARENT = Buffer.from(',"traceparent":');

/** The most bytes of a line besides its values and the cached pieces: the constant pieces above, `}` and the newline. */
const FIXED_BYTES = SEQ.length + DEDUPE_KEY.length + NO_HEADERS_PAYLOAD_TEXT.length + TRACEPARENT.length + 2;

/** Whether JSON.stringify of `s` is `s` in quotes, all ASCII: printable, without `"` or `\`. */
function plainString(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/** Writes the decimal digits of the non-negative integer `n` at `at`; returns the offset past them. */
function writeDigits(b: Buffer, at: number, n: number): number {
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  for (let i = at + digits - 1; i >= at; i--) {
    b[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + digits;
}

/**
 * The UTF-8 of `,"name":` and JSON.stringify of the last value it was given, kept: a group commit's
 * entries share their ts, a request's its request id, and most entries their tenant and topic.
 */
class LastQuoted {
  #value = '';
  #bytes: Buffer;
  #prefix: string;

  /** `prefix` is the member's name piece, so a line takes one copy per member. */
  constructor(prefix: string) {
    this.#prefix = prefix;
    this.#bytes = Buffer.from(`${prefix}""`);
  }

  of(value: string): Buffer {
    if (value !== this.#value) {
      this.#value = value;
      this.#bytes = Buffer.from(this.#prefix + JSON.stringify(value));
    }
    return this.#bytes;
  }
}

const TS = new LastQuoted(',"ts":');
const TENANT = new LastQuoted(',"tenant_id":');
const TOPIC = new LastQuoted(',"topic":');
const REQUEST = new LastQuoted(',"request_id":');

function hasMembers(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

const LEADING_SEQ = /^\{"seq":(\d+),/;

/**
 * The seq of a journal line read from its start, without parsing the line: formatEntry writes `seq`
 * first. Undefined for a line that does not start so (a corrupt one).
 */
export function leadingSeq(text: string): number | undefined {
  const m = LEADING_SEQ.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}
