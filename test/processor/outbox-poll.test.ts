import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRole, type Running } from '../../src/roles/start.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { assertExactlyOnceInOrder, createTopic, fillOutbox, processConfig } from '../support/outbox-load.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

const PARTITIONS = 16;

describe('a processor alone polls the outbox once for all its partitions', () => {
  let db: TestDatabase;
  let brokers: string[];
  let running: Running | undefined;
  const topic = `poll.${Bun.randomUUIDv7()}`;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-poll-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    await createTopic(brokers, topic);
  }, 120_000);

  afterAll(async () => {
    await running?.shutdown('test');
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rows written by another node while every partition idles are published within a few polls', async () => {
    const tenantsFile = join(dir, 'tenants.json');
    writeFileSync(tenantsFile, JSON.stringify({}));
    const config = processConfig(db, brokers, { tenantsFile, partitions: PARTITIONS, prefix: 'poll' });
    running = await startRole('process', config, quietLog);
    const owned = async (): Promise<number> => ((await (await fetch(`${running?.url}/healthz`)).json()) as { partitions_owned: number }).partitions_owned;
    await eventually(async () => (await owned()) === PARTITIONS, 30_000, 'every partition owned');
    // Each task has found its partition empty and waits; only the processor's poll can find the rows.
    await Bun.sleep(500);
    for (let round = 0; round < 3; round++) {
      const before = await sentCount();
      await fillOutbox(db, { topic, records: 200, tenants: 20, partitions: PARTITIONS, from: round * 200 });
      const started = performance.now();
      await eventually(async () => (await sentCount()) === before + 200, 10_000, `round ${round} sent`);
      // Well under a task's own idle poll (5 s): the poll every SLUICE_POLL_MS woke the tasks.
      expect(performance.now() - started).toBeLessThan(3_000);
    }
    const records = await readTopic(brokers, topic, { expected: 600, timeoutMs: 60_000, graceMs: 1_000 });
    assertExactlyOnceInOrder(records, 600);
  }, 120_000);

  async function sentCount(): Promise<number> {
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    return row?.n ?? 0;
  }
});
