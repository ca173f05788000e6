import { afterAll, beforeAll, expect, test } from 'bun:test';
import { resetOutbox } from '../../bench/database.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

test("between scenarios the outbox is emptied and a checkpoint flushes the last one's writes (not charged to the next)", async () => {
  await db.sql`INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, ingested_at)
               SELECT 't', 'k' || g, 0, 'e', '{}', '{}'::jsonb, now() FROM generate_series(1, 1000) AS g`;
  const checkpoints = async (): Promise<number> => (await db.sql<{ n: number }[]>`SELECT checkpoints_req::int AS n FROM pg_stat_bgwriter`)[0]?.n ?? -1;
  const before = await checkpoints();
  await resetOutbox(db.sql);
  expect((await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`)[0]?.n).toBe(0);
  expect(await checkpoints()).toBeGreaterThan(before);
});
