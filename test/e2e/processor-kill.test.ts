import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgressReader } from '../../src/processor/progress.ts';
import { readOutboxIdentity } from '../../src/outbox/identity.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { assertExactlyOnceInOrder, createTopic, fillOutbox } from '../support/outbox-load.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

const RECORDS = 30_000;
const TENANTS = 30;
const PARTITIONS = 16;
const PROGRESS_TOPIC = `progress.${Bun.randomUUIDv7()}`;

describe('SIGKILL of processors during publication', () => {
  let db: TestDatabase;
  let brokers: string[];
  let dir: string;
  let env: Record<string, string>;
  const prefix = `kill-${Bun.randomUUIDv7()}`;
  const topic = `kill.${Bun.randomUUIDv7()}`;

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    dir = mkdtempSync(join(tmpdir(), 'sluice-kill-'));
    // Quotas stretch publication over many seconds and many small transactions, so kills land
    // at every step of a batch.
    writeFileSync(join(dir, 'tenants.json'), JSON.stringify({ defaults: { quota: { rate: 50, burst: 50 } } }));
    await createTopic(brokers, topic);
    await fillOutbox(db, { topic, records: RECORDS, tenants: TENANTS, partitions: PARTITIONS });
    env = {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_PORT: '0',
      SLUICE_PARTITIONS: String(PARTITIONS),
      SLUICE_TRANSACTIONAL_ID_PREFIX: prefix,
      SLUICE_PROGRESS_TOPIC: PROGRESS_TOPIC,
      SLUICE_TENANTS_FILE: join(dir, 'tenants.json'),
      SLUICE_PUBLISH_BATCH: '50',
      SLUICE_REBALANCE_MS: '200',
      SLUICE_POLL_MS: '10',
    };
  }, 120_000);

  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const sent = async (): Promise<number> =>
    (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`)[0]?.n ?? 0;

  /** Rows that a committed Kafka transaction published but that are still pending in the outbox. */
  async function committedButUnmarked(): Promise<number> {
    const reader = new ProgressReader({
      brokers,
      topic: PROGRESS_TOPIC,
      transactionalIdPrefix: prefix,
      outboxIdentity: await readOutboxIdentity(db.sql),
      clientId: 'kill-test',
      log: quietLog,
    });
    try {
      const refs = (await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => reader.read(p)))).flat();
      if (refs.length === 0) return 0;
      const [row] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM outbox
        WHERE id = ANY(${db.sql.array(refs.map((r) => r.id))}::bigint[]) AND status = 'pending'`;
      return row?.n ?? 0;
    } finally {
      await reader.close();
    }
  }

  test('killed again and again, with Kafka commits not yet marked in Postgres: still exactly once, nothing lost', async () => {
    const random = prng(testSeed('processor kill'));
    let kills = 0;
    let windowsHit = 0;
    for (let round = 0; round < 12 && (round < 4 || windowsHit === 0); round++) {
      const before = await sent();
      const pair: SpawnedSluice[] = await Promise.all([spawnSluice(env, 'process'), spawnSluice(env, 'process')]);
      await eventually(async () => (await sent()) > before, 30_000, 'publication under way');
      // Killed at a random point of publication, counted in records rather than in time (about
      // 0.2 to 1 s of the quotas on a quiet machine, however slow this one is).
      const at = Math.min(RECORDS, (await sent()) + 300 + Math.floor(random() * 1_200));
      await eventually(async () => (await sent()) >= at, 60_000, `${at} records sent`);
      for (const p of pair) p.proc.kill('SIGKILL');
      for (const p of pair) expect(await p.proc.exited).not.toBe(0);
      kills += pair.length;
      if ((await committedButUnmarked()) > 0) windowsHit++;
      if ((await sent()) === RECORDS) break;
    }
    expect(kills).toBeGreaterThanOrEqual(8);
    // At least one kill landed between a Kafka commit and its Postgres update.
    expect(windowsHit).toBeGreaterThan(0);

    const survivors = await Promise.all([spawnSluice(env, 'process'), spawnSluice(env, 'process')]);
    await eventually(async () => (await sent()) === RECORDS, 120_000, 'every record sent');
    for (const s of survivors) s.proc.kill('SIGTERM');
    for (const s of survivors) expect(await s.proc.exited).toBe(0);

    const records = await readTopic(brokers, topic, { expected: RECORDS, timeoutMs: 60_000, graceMs: 2_000 });
    assertExactlyOnceInOrder(records, RECORDS);
  }, 300_000);
});
