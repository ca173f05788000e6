import type { JournalEntry } from '../core/record.ts';

/**
 * Serializes an entry with the documented field order, so `jq` output reads naturally. The payload is
 * spliced in as the client's own text, so the line holds it byte for byte. A payload with a line
 * break between its tokens cannot sit in one JSONL line as is: it is carried as a JSON string,
 * `payload_text`, instead (still byte for byte; `jq -r .payload_text` gives it back).
 */
export function formatEntry(e: JournalEntry): string {
  const head = JSON.stringify({
    seq: e.seq,
    ts: e.ts,
    tenant_id: e.tenant_id,
    dedupe_key: e.dedupe_key,
    topic: e.topic,
    request_id: e.request_id,
    headers: e.headers,
  });
  const payload = /[\r\n]/.test(e.payload) ? `"payload_text":${JSON.stringify(e.payload)}` : `"payload":${e.payload}`;
  const trace = e.traceparent === undefined ? '' : `,"traceparent":${JSON.stringify(e.traceparent)}`;
  return `${head.slice(0, -1)},${payload}${trace}}\n`;
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
