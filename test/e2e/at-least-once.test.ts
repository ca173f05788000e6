import { describe, expect, test } from 'bun:test';
import { CommittedReader } from '../../src/kafka/committed-records.ts';
import { readTopic } from '../support/kafka.ts';
import { postEvent, sluiceFixture } from '../support/sluice.ts';

describe('SLUICE_GUARANTEE=at_least_once', () => {
  const prefix = `alo-${Bun.randomUUIDv7()}`;
  const f = sluiceFixture({ SLUICE_GUARANTEE: 'at_least_once', SLUICE_TRANSACTIONAL_ID_PREFIX: prefix });

  test('publishes without transactions: the records arrive, no progress topic is written', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await postEvent(f.sluice.url, { dedupe_key: `a${i}`, payload: { i } }, { 'X-Tenant-Id': 'alo' })).status).toBe(202);
    }
    const records = await readTopic(f.brokers, f.sluice.topic, { expected: 3 });
    expect(records.map((r) => [r.key, r.value])).toEqual([
      ['alo:a0', '{"i":0}'],
      ['alo:a1', '{"i":1}'],
      ['alo:a2', '{"i":2}'],
    ]);
    const [row] = await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    expect(row?.n).toBe(3);
    const reader = new CommittedReader(f.brokers, 'alo-test');
    try {
      expect(await reader.partitionCount(`${prefix}.progress`).catch(() => 0)).toBe(0);
    } finally {
      await reader.close();
    }
  }, 60_000);
});
