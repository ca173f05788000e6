import { describe, expect, test } from 'bun:test';
import { partitionOf } from '../../src/outbox/partition.ts';
import { readTopic } from '../support/kafka.ts';
import { sluiceFixture } from '../support/sluice.ts';

async function post(url: string, tenant: string, lines: string[]): Promise<void> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': tenant },
    body: lines.join('\n'),
  });
  expect(res.status).toBe(202);
}

describe('batches are cut to the broker\'s size limit (SLUICE_PUBLISH_MAX_BYTES)', () => {
  describe('against a real broker (message.max.bytes 1 MiB)', () => {
    const f = sluiceFixture();

    test('600 records of 3 KB (1.8 MB) go out in a few transactions, none dead', async () => {
      const blob = 'x'.repeat(3_000);
      for (let part = 0; part < 2; part++) {
        await post(f.sluice.url, 'wide', Array.from({ length: 300 }, (_, i) => JSON.stringify({ dedupe_key: `w${part}-${i}`, payload: { blob } })));
      }
      expect((await readTopic(f.brokers, f.sluice.topic, { expected: 600, timeoutMs: 60_000 })).length).toBe(600);
      const metrics = await (await fetch(`${f.sluice.url}/metrics`)).text();
      const committed = Number(/^sluice_kafka_transactions_total\{result="committed"\} (\d+)/m.exec(metrics)?.[1] ?? 'NaN');
      expect(committed).toBeLessThanOrEqual(12);
      expect(metrics).not.toMatch(/^sluice_kafka_transactions_total\{result="aborted"\}/m);
    }, 90_000);
  });

  describe('with batches cut by bytes, tenants of one partition take turns (outside tester, issue 11)', () => {
    // 4 KiB batches: 6 of these ~100-byte events (612 bytes with the record overhead) each.
    const f = sluiceFixture({ SLUICE_PUBLISH_MAX_BYTES: '4096', SLUICE_PUBLISH_BATCH: '50' });

    test("a tenant's backlog of low ids does not hold back another tenant's later write until it drained", async () => {
      // The finding: a burst of 6,000 events of one tenant, then a trickle of another's in the same
      // partition; the trickle's records all came out after the burst's last one (p50 1.1 s, max 6 s).
      const burst = 'burst';
      const partitions = 16;
      let other = '';
      for (let i = 0; other === ''; i++) if (partitionOf(`quiet-${i}`, partitions) === partitionOf(burst, partitions)) other = `quiet-${i}`;
      const pad = 'x'.repeat(80);
      const n = 1_500;
      await post(f.sluice.url, burst, Array.from({ length: n }, (_, i) => JSON.stringify({ dedupe_key: `b${i}`, payload: { i, pad } })));
      await post(f.sluice.url, other, [JSON.stringify({ dedupe_key: 'q0', payload: { pad } })]);
      const records = await readTopic(f.brokers, f.sluice.topic, { expected: n + 1, timeoutMs: 120_000 });
      expect(records.length).toBe(n + 1);
      // One partition (the local broker's default): offsets order the records as they were published.
      expect(new Set(records.map((r) => r.partition)).size).toBe(1);
      const byOffset = [...records].sort((x, y) => (x.offset < y.offset ? -1 : 1));
      const quiet = byOffset.findIndex((r) => r.key === `${other}:q0`);
      // Published within a few batches of its acknowledgment, not after the burst's 250 batches.
      expect(quiet).toBeGreaterThanOrEqual(0);
      expect(quiet).toBeLessThan(n - 300);
      expect(byOffset.filter((r) => r.key.startsWith(`${burst}:`)).map((r) => r.key)).toEqual(Array.from({ length: n }, (_, i) => `${burst}:b${i}`));
    }, 180_000);
  });
});
