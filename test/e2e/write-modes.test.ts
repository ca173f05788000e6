import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually, postEvent, sluiceFixture, startSluice, type TestSluice } from '../support/sluice.ts';

for (const mode of ['fast_ack', 'background'] as const) {
  describe(`write mode ${mode}`, () => {
    let db: TestDatabase;
    let brokers: string[];
    let sluice: TestSluice;
    const durability = mode === 'fast_ack' ? 'journal' : 'memory';

    beforeAll(async () => {
      db = await createTestDatabase({ migrate: false });
      brokers = await testBrokers();
      sluice = await startSluice({ DATABASE_URL: db.url, KAFKA_BROKERS: brokers.join(','), SLUICE_WRITE_MODE: mode });
    }, 120_000);

    afterAll(async () => {
      await sluice?.stop();
      await db?.drop();
    });

    test(`answers with durability "${durability}"; a repeat is a duplicate; the forwarder fills the outbox and Kafka gets one record`, async () => {
      const first = await postEvent(sluice.url, { dedupe_key: 'a', payload: { n: 1 } }, { 'X-Tenant-Id': 'acme' });
      const again = await postEvent(sluice.url, { dedupe_key: 'a', payload: { n: 2 } }, { 'X-Tenant-Id': 'acme' });
      expect(first.status).toBe(202);
      expect(again.status).toBe(200);
      const a = (await first.json()) as { id: string | null; durability: string; duplicate: boolean };
      const b = (await again.json()) as { id: string | null; durability: string; duplicate: boolean };
      expect(a.durability).toBe(durability);
      expect(a.duplicate).toBe(false);
      expect(b.duplicate).toBe(true);
      if (mode === 'fast_ack') {
        expect(a.id).toMatch(/^test-node:\d+$/);
        expect(b.id).toBe(a.id);
      } else {
        expect(a.id).toBeNull();
      }
      await eventually(async () => {
        const rows = await db.sql`SELECT payload FROM outbox WHERE tenant_id = 'acme'`;
        return rows.length === 1;
      }, 10_000, 'row forwarded');
      const records = await readTopic(brokers, sluice.topic, { expected: 1, graceMs: 1_000 });
      expect(records.map((r) => [r.key, r.value])).toEqual([['acme:a', '{"n":1}']]);
    });

    test('an NDJSON batch of 1,000 lines is accepted in one request and forwarded whole', async () => {
      const body = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ dedupe_key: `b${i}`, payload: { i } })).join('\n');
      const res = await fetch(`${sluice.url}/v1/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'bulk' },
        body,
      });
      expect(res.status).toBe(202);
      const out = (await res.json()) as { accepted: number; duplicates: number; results: { durability: string }[] };
      expect(out.accepted).toBe(1000);
      expect(out.duplicates).toBe(0);
      expect(new Set(out.results.map((r) => r.durability))).toEqual(new Set([durability]));
      await eventually(async () => {
        const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'bulk'`;
        return r?.n === 1000;
      }, 20_000, '1000 rows forwarded');
    });
  });
}

describe('write mode sync under concurrency', () => {
  const f = sluiceFixture();

  test('1,000 concurrent fresh writes: each 202 with its own outbox id, none mistaken for a duplicate', async () => {
    // Group commits overlap (one journaled while the one before is inserted) and the forwarder
    // tails the same journal: neither may insert a line before its own request does.
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => postEvent(f.sluice.url, { dedupe_key: `c${i}`, payload: { i } }, { 'X-Tenant-Id': 'conc' })),
    );
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as { id: string; duplicate: boolean; durability: string }[];
    expect(answers.map((r) => r.status).filter((s) => s !== 202)).toEqual([]);
    expect(bodies.filter((b) => b.duplicate || b.durability !== 'outbox')).toEqual([]);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1_000);
    const [row] = await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'conc'`;
    expect(row?.n).toBe(1_000);
  }, 60_000);

  test('the outbox failing after the journal fsync: the write is acknowledged from the journal and reaches the outbox later, once', async () => {
    await f.db.sql`ALTER TABLE outbox RENAME TO outbox_away`;
    let res: Response;
    try {
      res = await postEvent(f.sluice.url, { payload: { late: true } }, { 'X-Tenant-Id': 'later' });
    } finally {
      await f.db.sql`ALTER TABLE outbox_away RENAME TO outbox`;
    }
    expect(res.status).toBe(202);
    const ack = (await res.json()) as { id: string; dedupe_key: string; duplicate: boolean; durability: string };
    expect(ack).toMatchObject({ duplicate: false, durability: 'journal' });
    expect(ack.id).toMatch(/^test-node:\d+$/);
    await eventually(async () => {
      const rows = await f.db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox WHERE tenant_id = 'later'`;
      return rows.length === 1 && rows[0]?.dedupe_key === ack.dedupe_key;
    }, 20_000, 'the forwarder inserted the journaled write');
  }, 60_000);
});
