import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { CommittedReader } from '../../src/kafka/committed-records.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { postEvent, startSluice, type TestSluice } from '../support/sluice.ts';

describe('SLUICE_GUARANTEE=at_least_once', () => {
  let db: TestDatabase;
  let brokers: string[];
  let sluice: TestSluice;
  const prefix = `alo-${Bun.randomUUIDv7()}`;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    brokers = await testBrokers();
    sluice = await startSluice({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_GUARANTEE: 'at_least_once',
      SLUICE_TRANSACTIONAL_ID_PREFIX: prefix,
    });
  }, 120_000);

  afterAll(async () => {
    await sluice?.stop();
    await db?.drop();
  });

  test('publishes without transactions: the records arrive, no progress topic is written', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await postEvent(sluice.url, { dedupe_key: `a${i}`, payload: { i } }, { 'X-Tenant-Id': 'alo' })).status).toBe(202);
    }
    const records = await readTopic(brokers, sluice.topic, { expected: 3 });
    expect(records.map((r) => [r.key, r.value])).toEqual([
      ['alo:a0', '{"i":0}'],
      ['alo:a1', '{"i":1}'],
      ['alo:a2', '{"i":2}'],
    ]);
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    expect(row?.n).toBe(3);
    const reader = new CommittedReader(brokers, 'alo-test');
    try {
      expect(await reader.partitionCount(`${prefix}.progress`).catch(() => 0)).toBe(0);
    } finally {
      await reader.close();
    }
  }, 60_000);
});
