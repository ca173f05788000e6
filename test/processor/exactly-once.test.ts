import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRole, type Running } from '../../src/roles/start.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { assertExactlyOnceInOrder, createTopic, fillOutbox, processConfig } from '../support/outbox-load.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

const RECORDS = 20_000;
const TENANTS = 50;
const PARTITIONS = 16;

describe('two processor instances on one outbox', () => {
  let db: TestDatabase;
  let brokers: string[];
  const topic = `eos.${Bun.randomUUIDv7()}`;
  const instances: Running[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'sluice-eos-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    await createTopic(brokers, topic);
    await fillOutbox(db, { topic, records: RECORDS, tenants: TENANTS, partitions: PARTITIONS });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(instances.map((i) => i.shutdown('test')));
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${RECORDS} records over ${TENANTS} tenants: each published exactly once, each tenant in id order, partitions shared`, async () => {
    // Quotas stretch publication over ~10 s (50 tenants × 40/s), so the second instance joins in the
    // middle even on a loaded machine, where starting it takes seconds (at 100/s the first had
    // published everything before the second took its partitions, and the second counted none).
    const tenantsFile = join(dir, 'tenants.json');
    writeFileSync(tenantsFile, JSON.stringify({ defaults: { quota: { rate: 40, burst: 40 } } }));
    const config = processConfig(db, brokers, { tenantsFile, partitions: PARTITIONS, prefix: 'eos', env: { SLUICE_REBALANCE_MS: '200' } });
    instances.push(await startRole('process', config, quietLog));
    // The second instance joins while the first is publishing: the partitions are split between them.
    await eventually(async () => (await sentCount()) > 0, 30_000, 'first records sent');
    instances.push(await startRole('process', config, quietLog));

    const owned = async (): Promise<number[]> =>
      Promise.all(
        instances.map(async (i) => ((await (await fetch(`${i.url}/healthz`)).json()) as { partitions_owned: number }).partitions_owned),
      );
    await eventually(async () => (await owned()).join() === `${PARTITIONS / 2},${PARTITIONS / 2}`, 10_000, 'partitions split evenly');
    await eventually(async () => (await sentCount()) === RECORDS, 90_000, 'every record marked sent');

    const records = await readTopic(brokers, topic, { expected: RECORDS, timeoutMs: 60_000, graceMs: 2_000 });
    assertExactlyOnceInOrder(records, RECORDS);
    const sample = records.find((r) => r.key === 'tenant-7:k7');
    expect(JSON.parse(sample?.value ?? '{}')).toEqual({ i: 7, pad: 'x'.repeat(100) });
    expect(sample?.headers).toMatchObject({ tenant_id: 'tenant-7', dedupe_key: 'k7', request_id: 'r7', source: 'fill' });

    // Both instances published: the metrics of each count a share of the records.
    const published = await Promise.all(
      instances.map(async (i) => {
        const text = await (await fetch(`${i.url}/metrics`)).text();
        return [...text.matchAll(/^sluice_published_total\{tenant="[^"]+"\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
      }),
    );
    expect(published.every((n) => n > 0)).toBe(true);
    expect(published.reduce((a, b) => a + b, 0)).toBe(RECORDS);
  }, 180_000);

  async function sentCount(): Promise<number> {
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    return row?.n ?? 0;
  }
});
