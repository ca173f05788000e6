import { RECORD_OVERHEAD_BYTES, type ClaimedRow } from '../core/record.ts';

/**
 * The longest leading run of `rows` (in id order) whose records fit in `maxBytes`, and at least one
 * row. Brokers refuse a produce batch over `message.max.bytes` (1 MiB by default) with the same
 * MESSAGE_TOO_LARGE as a single oversized record, which would send the whole batch down the
 * one-record-at-a-time path. A leading run keeps each tenant's rows a prefix in id order.
 */
export function withinBytes(rows: readonly ClaimedRow[], maxBytes: number): ClaimedRow[] {
  let total = 0;
  let n = 0;
  for (const row of rows) {
    total += row.bytes.payload.length + RECORD_OVERHEAD_BYTES;
    if (n > 0 && total > maxBytes) break;
    n++;
  }
  return rows.slice(0, n);
}
