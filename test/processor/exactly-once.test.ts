import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Admin } from '@platformatic/kafka';
import { loadConfig } from '../../src/config.ts';
import { partitionOf } from '../../src/outbox/partition.ts';
import { insertRows, type NewOutboxRow } from '../../src/outbox/repository.ts';
import { runProcessor } from '../../src/process.ts';
import type { Running } from '../../src/serve.ts';
import { readTopic, testBrokers, type ConsumedRecord } from '../support/kafka.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

const RECORDS = 20_000;
const TENANTS = 50;
const PARTITIONS = 16;

/** Each tenant's records must reach Kafka in outbox id order (the topic has one partition). */
export function assertExactlyOnceInOrder(records: ConsumedRecord[], expected: number): void {
  const keys = new Set(records.map((r) => r.key));
  expect(records.length).toBe(expected);
  expect(keys.size).toBe(expected);
  const last = new Map<string, bigint>();
  const outOfOrder: string[] = [];
  for (const r of records) {
    const tenant = r.headers.tenant_id ?? '';
    const id = BigInt(r.headers.outbox_id ?? '0');
    if ((last.get(tenant) ?? -1n) >= id) outOfOrder.push(`${tenant}: ${id} after ${last.get(tenant)}`);
    last.set(tenant, id);
  }
  expect(outOfOrder).toEqual([]);
}

export async function fillOutbox(db: TestDatabase, topic: string, records: number, tenants: number): Promise<void> {
  const rows: NewOutboxRow[] = Array.from({ length: records }, (_, i) => {
    const tenant = `tenant-${i % tenants}`;
    return {
      tenant_id: tenant,
      dedupe_key: `k${i}`,
      partition: partitionOf(tenant, PARTITIONS),
      topic,
      payload: { i, pad: 'x'.repeat(100) },
      headers: { source: 'fill' },
      request_id: `r${i}`,
      traceparent: undefined,
      ingested_at: new Date().toISOString(),
    };
  });
  for (let i = 0; i < rows.length; i += 2_000) await insertRows(db.sql, rows.slice(i, i + 2_000));
}

export async function createTopic(brokers: string[], topic: string): Promise<void> {
  const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: brokers });
  try {
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
  } finally {
    await admin.close();
  }
}

describe('two processor instances on one outbox', () => {
  let db: TestDatabase;
  let brokers: string[];
  const topic = `eos.${Bun.randomUUIDv7()}`;
  const instances: Running[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    await createTopic(brokers, topic);
    await fillOutbox(db, topic, RECORDS, TENANTS);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(instances.map((i) => i.shutdown('test')));
    await db?.drop();
  });

  test(`${RECORDS} records over ${TENANTS} tenants: each published exactly once, each tenant in id order, partitions shared`, async () => {
    const config = loadConfig({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_PORT: '0',
      SLUICE_PARTITIONS: String(PARTITIONS),
      SLUICE_TRANSACTIONAL_ID_PREFIX: `eos-${Bun.randomUUIDv7()}`,
      SLUICE_REBALANCE_MS: '200',
      SLUICE_POLL_MS: '20',
    });
    instances.push(await runProcessor(config, quietLog));
    // The second instance joins while the first is publishing: the partitions are split between them.
    await eventually(async () => (await sentCount()) > 0, 30_000, 'first records sent');
    instances.push(await runProcessor(config, quietLog));

    await eventually(async () => (await sentCount()) === RECORDS, 90_000, 'every record marked sent');
    const owned = await Promise.all(
      instances.map(async (i) => ((await (await fetch(`${i.url}/healthz`)).json()) as { partitions_owned: number }).partitions_owned),
    );
    expect(owned).toEqual([PARTITIONS / 2, PARTITIONS / 2]);

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
