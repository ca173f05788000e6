import type { ClaimedRow } from '../../src/core/record.ts';

/** A claimed row with each of its record's bytes as text, for assertions. */
export function claimedText(row: ClaimedRow) {
  const { bytes, ...decided } = row;
  const text = (b: Buffer | null) => (b === null ? null : b.toString());
  return {
    ...decided,
    bytes: Object.fromEntries(Object.entries(bytes).map(([name, b]) => [name, text(b)])),
  };
}

/** Claimed rows' dedupe keys, in claim order. */
export const claimedKeys = (rows: readonly ClaimedRow[]) => rows.map((r) => r.bytes.dedupe_key.toString());

/** A claimed row as the claim builds it, from text. */
export function claimedRow(over: Partial<Omit<ClaimedRow, 'bytes'>> & Partial<Record<'dedupe_key' | 'payload' | 'request_id' | 'traceparent' | 'ingested_at', string | null>> = {}): ClaimedRow {
  const { dedupe_key = 'order-1', payload = '{}', request_id = 'req-1', traceparent = null, ingested_at = '2026-11-25T10:00:00.123Z', ...decided } = over;
  const row = { id: '42', tenant_id: 'acme', topic: 'acme.events', headers: {}, attempts: 0, replays: 0, ...decided };
  const bytes = (s: string | null) => (s === null ? null : Buffer.from(s));
  return {
    ...row,
    bytes: {
      id: Buffer.from(row.id),
      tenant_id: Buffer.from(row.tenant_id),
      dedupe_key: Buffer.from(dedupe_key ?? ''),
      payload: Buffer.from(payload ?? ''),
      request_id: bytes(request_id),
      traceparent: bytes(traceparent),
      ingested_at: Buffer.from(ingested_at ?? ''),
    },
  };
}
