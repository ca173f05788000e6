import { describe, expect, test } from 'bun:test';
import { withinBytes } from '../../src/processor/batch-bytes.ts';
import { claimedRow } from '../support/claimed-text.ts';
import { readTopic } from '../support/kafka.ts';
import { sluiceFixture } from '../support/sluice.ts';

const row = (id: number, bytes: number) => claimedRow({ id: String(id), payload: 'x'.repeat(bytes) });

describe('batches are cut to the broker\'s size limit', () => {
  test('a leading run that fits, and never less than one row', () => {
    const rows = [row(1, 400_000), row(2, 400_000), row(3, 400_000)];
    expect(withinBytes(rows, 900_000).map((r) => r.id)).toEqual(['1', '2']);
    expect(withinBytes([row(1, 5_000_000), row(2, 10)], 900_000).map((r) => r.id)).toEqual(['1']);
    expect(withinBytes([], 900_000)).toEqual([]);
  });

  describe('against a real broker (message.max.bytes 1 MiB)', () => {
    const f = sluiceFixture();

    test('600 records of 3 KB (1.8 MB) go out in a few transactions, none dead', async () => {
      const blob = 'x'.repeat(3_000);
      for (let part = 0; part < 2; part++) {
        const body = Array.from({ length: 300 }, (_, i) => JSON.stringify({ dedupe_key: `w${part}-${i}`, payload: { blob } })).join('\n');
        const res = await fetch(`${f.sluice.url}/v1/events`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'wide' },
          body,
        });
        expect(res.status).toBe(202);
      }
      expect((await readTopic(f.brokers, f.sluice.topic, { expected: 600, timeoutMs: 60_000 })).length).toBe(600);
      const metrics = await (await fetch(`${f.sluice.url}/metrics`)).text();
      const committed = Number(/^sluice_kafka_transactions_total\{result="committed"\} (\d+)/m.exec(metrics)?.[1] ?? 'NaN');
      expect(committed).toBeLessThanOrEqual(12);
      expect(metrics).not.toMatch(/^sluice_kafka_transactions_total\{result="aborted"\}/m);
    }, 90_000);
  });
});
