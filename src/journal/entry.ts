import type { Envelope } from '../envelope.ts';

/** One journal line, exactly as written: `seq` is monotonic per node, `ts` the acknowledgment clock. */
export interface JournalEntry extends Envelope {
  seq: number;
  ts: string;
}

/** Serializes an entry with the documented field order, so `jq` output reads naturally. */
export function formatEntry(e: JournalEntry): string {
  const line: Record<string, unknown> = {
    seq: e.seq,
    ts: e.ts,
    tenant_id: e.tenant_id,
    dedupe_key: e.dedupe_key,
    topic: e.topic,
    request_id: e.request_id,
    headers: e.headers,
    payload: e.payload,
  };
  if (e.traceparent !== undefined) line.traceparent = e.traceparent;
  return `${JSON.stringify(line)}\n`;
}
