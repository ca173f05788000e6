import { expect } from 'bun:test';
import { Admin } from '@platformatic/kafka';
import { partitionOf } from '../../src/outbox/partition.ts';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import type { Sql } from '../../src/outbox/db.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import type { ConsumedRecord } from './kafka.ts';
import type { TestDatabase } from './postgres.ts';

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

/**
 * Fills the outbox directly, as ingest would have: `records` rows spread round-robin over `tenants`,
 * numbered from `from` (default 0), so a later fill adds new rows.
 */
export async function fillOutbox(
  db: TestDatabase,
  opts: { topic: string; records: number; tenants: number; partitions: number; from?: number; tenantPrefix?: string; via?: Sql },
): Promise<void> {
  const { topic, records, tenants } = opts;
  const from = opts.from ?? 0;
  const rows: NewOutboxRow[] = Array.from({ length: records }, (_, n) => {
    const i = from + n;
    const tenant = `${opts.tenantPrefix ?? 'tenant'}-${i % tenants}`;
    return {
      tenant_id: tenant,
      dedupe_key: `k${i}`,
      partition: partitionOf(tenant, opts.partitions),
      topic,
      payload: JSON.stringify({ i, pad: 'x'.repeat(100) }),
      headers: { source: 'fill' },
      request_id: `r${i}`,
      traceparent: undefined,
      ingested_at: new Date().toISOString(),
    };
  });
  for (let i = 0; i < rows.length; i += 2_000) await insertRows(opts.via ?? db.sql, rows.slice(i, i + 2_000));
}

/**
 * A topic with one partition, so a consumer sees each tenant's records in publication order;
 * `maxMessageBytes` makes larger records fail for good (MESSAGE_TOO_LARGE, a failure for the breaker).
 */
export async function createTopic(brokers: string[], topic: string, maxMessageBytes?: number): Promise<void> {
  const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: brokers });
  try {
    const configs = maxMessageBytes === undefined ? [] : [{ name: 'max.message.bytes', value: String(maxMessageBytes) }];
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1, configs });
  } finally {
    await admin.close();
  }
}

/** The configuration of a `sluice process` instance on the test database and broker, with its own transactional id prefix. */
export function processConfig(
  db: TestDatabase,
  brokers: string[],
  opts: { tenantsFile: string; partitions: number; prefix: string; env?: Record<string, string> },
): Config {
  return loadConfig({
    SLUICE_TENANTS_FILE: opts.tenantsFile,
    DATABASE_URL: db.url,
    KAFKA_BROKERS: brokers.join(','),
    SLUICE_PORT: '0',
    SLUICE_PARTITIONS: String(opts.partitions),
    SLUICE_TRANSACTIONAL_ID_PREFIX: `${opts.prefix}-${Bun.randomUUIDv7()}`,
    SLUICE_POLL_MS: '20',
    ...opts.env,
  });
}
