/**
 * The record as every part of sluice passes it along: ingest → journal → outbox → Kafka. One base,
 * and the variant each stage adds to it.
 */
interface RecordFields {
  tenant_id: string;
  dedupe_key: string;
  topic: string;
  /**
   * The payload exactly as the client sent it: JSON text of an object, never re-serialized on its
   * way to the Kafka record's value (a round trip through JSON.parse changes numbers and keys).
   */
  payload: string;
  headers: Record<string, string>;
}

/** One validated write. */
export interface Envelope extends RecordFields {
  request_id: string;
  /** W3C trace context of the client's request, when it sent a valid one. */
  traceparent?: string;
}

/** One journal line: `seq` is monotonic per node, `ts` the acknowledgment clock. */
export interface JournalEntry extends Envelope {
  seq: number;
  ts: string;
}

/** An outbox row to insert. */
export interface NewOutboxRow extends RecordFields {
  partition: number;
  request_id: string;
  traceparent: string | undefined;
  ingested_at: string;
}

/** An outbox row claimed for publishing. */
export interface ClaimedRow extends RecordFields {
  id: string;
  partition: number;
  request_id: string | null;
  traceparent: string | null;
  ingested_at: Date;
  attempts: number;
  /** How often an operator re-queued the row (as of this claim); above 0 it is published with `replay: true`. */
  replays: number;
  /** Bytes of the payload text. */
  payload_bytes: number;
}

/** Header names sluice sets on every Kafka record; an event may not supply its own. */
export const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'tenant_id',
  'dedupe_key',
  'outbox_id',
  'request_id',
  'ingested_at',
  'traceparent',
  'replay',
]);

/** Kafka record key: the pair that is unique in the outbox. */
export function recordKey(e: { tenant_id: string; dedupe_key: string }): string {
  return `${e.tenant_id}:${e.dedupe_key}`;
}

/** The pair as a map key: NUL cannot occur in either part, so no two pairs share one. */
export function pairKey(tenant: string, dedupeKey: string): string {
  return `${tenant}\u0000${dedupeKey}`;
}

/** A record's id while it lives only in a node's journal (the outbox gives it another once inserted). */
export function journalRecordId(nodeId: string, seq: number): string {
  return `${nodeId}:${seq}`;
}
