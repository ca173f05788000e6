import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../../src/outbox/db.ts';
import type { ReservedSql } from 'postgres';
import { openChecked } from '../../src/outbox/open-checked.ts';
import { Outbox, type Entered } from '../../src/outbox/outbox.ts';
import { partitionOf } from '../../src/outbox/partition.ts';
import { startProcessing, type Processing } from '../../src/processor/processing.ts';
import { TenantControls } from '../../src/processor/tenant-controls.ts';
import { openTenantMetrics } from '../../src/tenant-metrics.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { assertExactlyOnceInOrder, createTopic, fillOutbox, processConfig } from '../support/outbox-load.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

const PARTITIONS = 16;

/**
 * The real outbox, counting for each partition the processor's polls that found it pending after
 * its task had looked and found it empty: when the task looks again, that count is how many polls
 * it took to wake it.
 */
class PollCountingOutbox extends Outbox {
  /** Partitions whose task has looked at least once. */
  readonly looked = new Set<number>();
  /** For each look that followed an empty one: the polls that found the partition pending in between. */
  readonly pollsToWake: number[] = [];
  /** Present while the partition's last look found it empty: the polls since that found it pending. */
  #foundSinceEmpty = new Map<number, number>();

  override async pendingPartitions(partitions: readonly number[]): Promise<number[]> {
    return this.#found(await super.pendingPartitions(partitions));
  }

  override async enteredPartitions(partitions: readonly number[], after: string): Promise<Entered> {
    const entered = await super.enteredPartitions(partitions, after);
    this.#found(entered.partitions);
    return entered;
  }

  #found(pending: number[]): number[] {
    for (const p of pending) {
      const found = this.#foundSinceEmpty.get(p);
      if (found !== undefined) this.#foundSinceEmpty.set(p, found + 1);
    }
    return pending;
  }

  override async pendingTenants(partition: number): Promise<string[]> {
    const found = this.#foundSinceEmpty.get(partition);
    if (found !== undefined) this.pollsToWake.push(found);
    this.#foundSinceEmpty.delete(partition);
    const tenants = await super.pendingTenants(partition);
    this.looked.add(partition);
    if (tenants.length === 0) this.#foundSinceEmpty.set(partition, 0);
    return tenants;
  }
}

/**
 * A processor as `sluice process` runs it (see roles/start.ts), alone on a database and a topic of
 * its own, started by `start` with the tenants file `tenants` on the outbox `make` builds.
 */
function processorAlone(name: string) {
  const f = {
    db: undefined as unknown as TestDatabase,
    brokers: [] as string[],
    topic: `${name}.${Bun.randomUUIDv7()}`,
    database: undefined as Database | undefined,
    processing: undefined as Processing | undefined,
    async start<O extends Outbox>(tenants: object, make: (sql: Database['sql'], partitions: number) => O): Promise<O> {
      const tenantsFile = join(dir, 'tenants.json');
      writeFileSync(tenantsFile, JSON.stringify(tenants));
      const config = processConfig(f.db, f.brokers, { tenantsFile, partitions: PARTITIONS, prefix: name });
      const database = await openChecked(config, quietLog);
      f.database = database;
      const outbox = make(database.sql, config.partitions);
      const { tenants: inForce, metrics } = openTenantMetrics(config, quietLog);
      const controls = new TenantControls(inForce, metrics, quietLog);
      const processing = await startProcessing({ config, db: database, outbox, brokers: f.brokers, tenants: inForce, controls, metrics, log: quietLog });
      f.processing = processing;
      await eventually(async () => processing.processor.owned.size === PARTITIONS, 30_000, 'every partition owned');
      return outbox;
    },
    async sent(): Promise<number> {
      const [row] = await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
      return row?.n ?? 0;
    },
  };
  const dir = mkdtempSync(join(tmpdir(), `sluice-${name}-`));
  beforeAll(async () => {
    f.db = await createTestDatabase();
    f.brokers = await testBrokers();
    await createTopic(f.brokers, f.topic);
  }, 120_000);
  afterAll(async () => {
    await f.processing?.close();
    await f.database?.close();
    await f.db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  return f;
}

describe('a processor alone polls the outbox once for all its partitions', () => {
  const f = processorAlone('poll');

  test('rows written by another node while every partition idles wake their tasks at the first poll that finds them', async () => {
    const outbox = await f.start({}, (sql, partitions) => new PollCountingOutbox(sql, partitions));
    // Each task has found its partition empty and waits; only the processor's poll can find the rows.
    await eventually(async () => outbox.looked.size === PARTITIONS, 30_000, 'every task looked once');
    for (let round = 0; round < 3; round++) {
      const before = await f.sent();
      await fillOutbox(f.db, { topic: f.topic, records: 200, tenants: 20, partitions: PARTITIONS, from: round * 200 });
      await eventually(async () => (await f.sent()) === before + 200, 30_000, `round ${round} sent`);
    }
    // A task that found its partition empty looked again at the first poll that found rows there (a
    // poll in flight meanwhile may add one or two). Its own idle poll (5 s) would have come only after
    // some 250 polls of SLUICE_POLL_MS=20: counted in polls, so a slow machine cannot fail it.
    expect(outbox.pollsToWake.filter((n) => n > 0).length).toBeGreaterThan(0);
    expect(Math.max(...outbox.pollsToWake)).toBeLessThanOrEqual(3);
    const records = await readTopic(f.brokers, f.topic, { expected: 600, timeoutMs: 60_000, graceMs: 1_000 });
    assertExactlyOnceInOrder(records, 600);
  }, 120_000);
});

describe('rows held back by time alone are published as time allows, without new inserts', () => {
  const f = processorAlone('held');

  test("a tenant over its quota: written at once by another node, its rows go out at the quota's rate, not at the tasks' 5-s idle passes", async () => {
    // 10 at once, then 40 a second: 200 rows take ~5 s. Found only by the tasks' own idle pass (every
    // 5 s, 10 tokens each time, the burst) they would take ~95 s.
    await f.start({ defaults: { quota: { rate: 40, burst: 10 } } }, (sql, partitions) => new Outbox(sql, partitions));
    await fillOutbox(f.db, { topic: f.topic, records: 200, tenants: 1, partitions: PARTITIONS });
    const started = performance.now();
    await eventually(async () => (await f.sent()) === 200, 30_000, 'all 200 sent');
    // The quota holds: 10 at once and 40 a second cannot send 200 in much under 4.75 s.
    expect(performance.now() - started).toBeGreaterThan(4_000);
    const records = await readTopic(f.brokers, f.topic, { expected: 200, timeoutMs: 60_000, graceMs: 1_000 });
    assertExactlyOnceInOrder(records, 200);
  }, 120_000);
});

/** The real outbox, counting the processor's regular polls. */
class PollCounter extends Outbox {
  polls = 0;
  /** When each poll looked, on the database's clock (epoch ms). */
  readonly at: number[] = [];

  override async enteredPartitions(partitions: readonly number[], after: string): Promise<Entered> {
    const entered = await super.enteredPartitions(partitions, after);
    this.polls++;
    this.at.push(entered.at);
    return entered;
  }
}

/** A tenant prefix whose `-0` tenant's partition is none of quick-0..3's: no task woken for those finds its rows by chance. */
function slowTenantPrefix(): string {
  const quick = new Set(Array.from({ length: 4 }, (_, i) => partitionOf(`quick-${i}`, PARTITIONS)));
  return Array.from({ length: 100 }, (_, i) => `slow${i}`).find((p) => !quick.has(partitionOf(`${p}-0`, PARTITIONS))) ?? '';
}

/** Commits the transaction open on `slow`; returns when, on the database's clock (read just before). */
async function commitNow(slow: ReservedSql): Promise<number> {
  const [now] = await slow<{ at: number }[]>`SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS at`;
  await slow`COMMIT`;
  return now?.at ?? Number.NaN;
}

/**
 * The polls between `committed` and the publication of the tenant's last row, on the database's
 * clock, so a slow machine cannot fail a bound on it: the task's own idle pass comes only every 5 s,
 * some 250 polls of SLUICE_POLL_MS=20.
 */
async function pollsUntilPublished(db: TestDatabase, outbox: PollCounter, tenant: string, committed: number): Promise<number> {
  const [last] = await db.sql<{ at: number }[]>`
    SELECT extract(epoch FROM max(sent_at))::float8 * 1000 AS at FROM outbox WHERE tenant_id = ${tenant}`;
  return outbox.at.filter((at) => at > committed && at < (last?.at ?? Number.NaN)).length;
}

/** Opens a transaction on `slow` that inserts 5 rows of the slow tenant, then commits 20 quick rows above their ids. */
async function slowRowsBelowQuickOnes(f: ReturnType<typeof processorAlone>, slow: ReservedSql, slowPrefix: string): Promise<void> {
  await slow`BEGIN`;
  await fillOutbox(f.db, { topic: f.topic, records: 5, tenants: 1, partitions: PARTITIONS, tenantPrefix: slowPrefix, via: slow });
  await fillOutbox(f.db, { topic: f.topic, records: 20, tenants: 4, partitions: PARTITIONS, from: 5, tenantPrefix: 'quick' });
}

/** Every one of `total` rows sent, the slow tenant's within 5 polls of `committed`, and each in Kafka once, in order. */
async function publishedSoonAfter(f: ReturnType<typeof processorAlone>, outbox: PollCounter, slowPrefix: string, committed: number, total: number): Promise<void> {
  await eventually(async () => (await f.sent()) === total, 30_000, 'every row sent');
  expect(await pollsUntilPublished(f.db, outbox, `${slowPrefix}-0`, committed)).toBeLessThanOrEqual(5);
  const records = await readTopic(f.brokers, f.topic, { expected: total, timeoutMs: 60_000, graceMs: 1_000 });
  assertExactlyOnceInOrder(records, total);
}

describe('an insert that commits after rows written after it is found by the poll', () => {
  const f = processorAlone('late');

  test('another node\'s transaction that commits after later ids were polled (a slow insert, a lock wait) is published at the next polls, not at its task\'s 5-s idle pass', async () => {
    const outbox = await f.start({}, (sql, partitions) => new PollCounter(sql, partitions));
    const polls = async (n: number): Promise<void> => {
      const from = outbox.polls;
      await eventually(async () => outbox.polls >= from + n, 30_000, `${n} polls`);
    };
    const slowPrefix = slowTenantPrefix();
    // Each partition's first batch sets up its transactional producer (a second or so): done first,
    // so what is measured below is how soon the poll finds the rows.
    await fillOutbox(f.db, { topic: f.topic, records: 5, tenants: 5, partitions: PARTITIONS, from: 100, tenantPrefix: 'quick' });
    await fillOutbox(f.db, { topic: f.topic, records: 1, tenants: 1, partitions: PARTITIONS, from: 105, tenantPrefix: slowPrefix });
    await eventually(async () => (await f.sent()) === 6, 30_000, 'the first rows sent');
    await polls(3);
    const slow = await f.db.sql.reserve();
    let committing: number;
    try {
      // The slow transaction takes its ids first, then rows of other tenants commit above them and are
      // polled: the poll's window moves past the slow rows' ids before they are visible. (The quick
      // rows wait for it too: no row is claimed while an older transaction runs.)
      await slowRowsBelowQuickOnes(f, slow, slowPrefix);
      await polls(5);
      expect(await f.sent()).toBe(6);
      committing = await commitNow(slow);
    } finally {
      slow.release();
    }
    await publishedSoonAfter(f, outbox, slowPrefix, committing, 31);
  }, 120_000);
});

describe('a processor that starts while a transaction holds rows below later ids', () => {
  const f = processorAlone('late-start');

  test('finds them when it commits, at the next polls, though its first poll already saw ids above them (outside tester: a partition just taken in a rebalance)', async () => {
    const slowPrefix = slowTenantPrefix();
    // One row of the slow tenant first, committed: its publication sets up the partition's producer.
    await fillOutbox(f.db, { topic: f.topic, records: 1, tenants: 1, partitions: PARTITIONS, from: 100, tenantPrefix: slowPrefix });
    const slow = await f.db.sql.reserve();
    let committing: number;
    let outbox: PollCounter;
    try {
      await slowRowsBelowQuickOnes(f, slow, slowPrefix);
      // Started now: its first poll sees the quick rows' ids, above the slow ones.
      outbox = await f.start({}, (sql, partitions) => new PollCounter(sql, partitions));
      await eventually(async () => (await f.sent()) === 1, 30_000, 'the first row sent');
      const from = outbox.polls;
      await eventually(async () => outbox.polls >= from + 5, 30_000, '5 polls');
      committing = await commitNow(slow);
    } finally {
      slow.release();
    }
    await publishedSoonAfter(f, outbox, slowPrefix, committing, 26);
  }, 120_000);
});
