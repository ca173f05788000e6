/** One validated write, as every part of sluice passes it along: ingest → journal → outbox. */
export interface Envelope {
  tenant_id: string;
  dedupe_key: string;
  topic: string;
  request_id: string;
  headers: Record<string, string>;
  /**
   * The payload exactly as the client sent it: JSON text of an object, never re-serialized on its
   * way to the Kafka record's value (a round trip through JSON.parse changes numbers and keys).
   */
  payload: string;
  /** W3C trace context of the client's request, when it sent a valid one. */
  traceparent?: string;
}

/** Kafka record key: the pair that is unique in the outbox. */
export function recordKey(e: { tenant_id: string; dedupe_key: string }): string {
  return `${e.tenant_id}:${e.dedupe_key}`;
}
