/**
 * The exact size of an uncompressed v2 record batch holding one record: what a broker holds against
 * a topic's `max.message.bytes` when that record is sent alone. The batch header is 61 bytes; the
 * record is its length (a varint), attributes, timestamp and offset deltas (0 alone: one byte each),
 * key, value and headers, each length a zigzag varint (-1, one byte, for null).
 */
export const BATCH_HEADER_BYTES = 61;

export interface RecordParts {
  key: Uint8Array | null | undefined;
  value: Uint8Array | null | undefined;
  headers: Iterable<[Uint8Array, Uint8Array | null | undefined]>;
}

export function singleRecordBatchBytes(r: RecordParts): number {
  let body = 1 + 1 + 1 + field(r.key) + field(r.value);
  let count = 0;
  for (const [name, value] of r.headers) {
    body += field(name) + field(value);
    count++;
  }
  body += varintBytes(count);
  return BATCH_HEADER_BYTES + varintBytes(body) + body;
}

/** A length-prefixed field: its zigzag varint length (-1 for null) and its bytes. */
function field(bytes: Uint8Array | null | undefined): number {
  return bytes === null || bytes === undefined ? varintBytes(-1) : varintBytes(bytes.length) + bytes.length;
}

/** Bytes of `n` as a zigzag varint (Kafka's record fields). */
export function varintBytes(n: number): number {
  let zz = n >= 0 ? n * 2 : -n * 2 - 1;
  let bytes = 1;
  while (zz >= 0x80) {
    zz = Math.floor(zz / 0x80);
    bytes++;
  }
  return bytes;
}
