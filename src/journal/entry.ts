import type { JournalEntry } from '../core/record.ts';

/**
 * Serializes an entry with the documented field order, so `jq` output reads naturally. The payload is
 * spliced in as the client's own text, so the line holds it byte for byte. A payload with a line
 * break between its tokens cannot sit in one JSONL line as is: it is carried as a JSON string,
 * `payload_text`, instead (still byte for byte; `jq -r .payload_text` gives it back).
 */
export function formatEntry(e: JournalEntry): string {
  // Built from its pieces: the same bytes as JSON.stringify of the object with these fields in this
  // order (each piece is JSON.stringify of its value), without building that object per entry.
  const headers = hasMembers(e.headers) ? JSON.stringify(e.headers) : '{}';
  const payload = e.payload.includes('\n') || e.payload.includes('\r') ? `"payload_text":${JSON.stringify(e.payload)}` : `"payload":${e.payload}`;
  const trace = e.traceparent === undefined ? '' : `,"traceparent":${JSON.stringify(e.traceparent)}`;
  return `{"seq":${e.seq},"ts":${TS.of(e.ts)},"tenant_id":${TENANT.of(e.tenant_id)},"dedupe_key":${JSON.stringify(e.dedupe_key)},"topic":${TOPIC.of(e.topic)},"request_id":${REQUEST.of(e.request_id)},"headers":${headers},${payload}${trace}}\n`;
}

/**
 * JSON.stringify of the last string it was given, kept: a group commit's entries share their ts, a
 * request's its request id, and most entries their tenant and topic.
 */
class LastQuoted {
  #value = '';
  #quoted = '""';

  of(value: string): string {
    if (value !== this.#value) {
      this.#value = value;
      this.#quoted = JSON.stringify(value);
    }
    return this.#quoted;
  }
}

const TS = new LastQuoted();
const TENANT = new LastQuoted();
const TOPIC = new LastQuoted();
const REQUEST = new LastQuoted();

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
