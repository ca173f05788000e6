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

/**
 * An outbox row claimed for publishing. What the processor decides by is decoded (id, tenant, topic,
 * counts, the event's own headers); the texts that only become the Kafka record stay the bytes the
 * database sent (`bytes`): decoding them into strings and encoding them back cost more than the
 * rest of the record's way from the claim to the Kafka client.
 */
export interface ClaimedRow {
  id: string;
  tenant_id: string;
  topic: string;
  headers: Record<string, string>;
  attempts: number;
  /** How often an operator re-queued the row (as of this claim); above 0 it is published with `replay: true`. */
  replays: number;
  bytes: ClaimedRecordBytes;
}

/** A claimed row's texts as UTF-8, as they go into its Kafka record. */
export interface ClaimedRecordBytes {
  id: Buffer;
  tenant_id: Buffer;
  dedupe_key: Buffer;
  /** The payload text exactly as the client sent it. */
  payload: Buffer;
  request_id: Buffer | null;
  traceparent: Buffer | null;
  /** ISO 8601 in UTC with milliseconds (`2026-11-25T10:00:00.123Z`). */
  ingested_at: Buffer;
}

/**
 * Headers, key and record framing of one Kafka record, on top of its payload: a generous estimate,
 * which the claim's byte limit (SLUICE_PUBLISH_MAX_BYTES) counts per row.
 */
export const RECORD_OVERHEAD_BYTES = 512;

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

/** Kafka record key: the pair that is unique in the outbox, `tenant_id:dedupe_key`. */
export function recordKey(tenant: Uint8Array, dedupeKey: Uint8Array): Buffer {
  const key = Buffer.allocUnsafe(tenant.length + 1 + dedupeKey.length);
  key.set(tenant, 0);
  key[tenant.length] = COLON;
  key.set(dedupeKey, tenant.length + 1);
  return key;
}
const COLON = 0x3a;

/** The pair as a map key: NUL cannot occur in either part, so no two pairs share one. */
export function pairKey(tenant: string, dedupeKey: string): string {
  return `${tenant}\u0000${dedupeKey}`;
}

/** A record's id while it lives only in a node's journal (the outbox gives it another once inserted). */
export function journalRecordId(nodeId: string, seq: number): string {
  return `${nodeId}:${seq}`;
}
