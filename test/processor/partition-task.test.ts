import { afterAll, beforeAll, expect, test } from 'bun:test';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { assertExactlyOnceInOrder, createTopic } from '../support/outbox-load.ts';
import { createMetrics } from '../../src/metrics.ts';
import { PartitionTask } from '../../src/processor/partition-task.ts';
import { createPublishing } from '../../src/processor/publisher.ts';
import { TenantControls } from '../../src/processor/tenant-controls.ts';
import { NO_TENANTS_FILE, Tenants } from '../../src/tenants.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { silentPort } from '../support/ports.ts';
import { createTestDatabase, quietLog, waitSettled, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { CountingClock } from '../support/watched-clock.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ migrate: true });
});
afterAll(async () => {
  await db.drop();
});

test('stopping a task whose broker accepts and never answers ends the Kafka call in flight, well within the shutdown timeout', async () => {
  const silent = await silentPort();
  const metrics = createMetrics();
  const tenants = new Tenants(NO_TENANTS_FILE, quietLog);
  const publishing = createPublishing({
    brokers: [`127.0.0.1:${silent.port}`],
    clientId: 'stop-test',
    compression: 'none',
    guarantee: 'exactly_once',
    transactionalIdPrefix: 'stop-test',
    progressTopic: 'stop-test-progress',
    outboxIdentity: 'stop-test',
  });
  let asked = false;
  const task = new PartitionTask({
    partition: 0,
    outbox: new Outbox(db.sql, 16),
    producer: publishing.forPartition(0),
    controls: new TenantControls(tenants, metrics, quietLog),
    tenants,
    metrics,
    log: quietLog,
    batchSize: 100,
    batchBytes: 1 << 20,
    pollMs: 50,
    maxAttempts: 3,
    retryBaseMs: 100,
    retryMaxMs: 1_000,
    stillOwned: async () => {
      asked = true;
      return true;
    },
    onFenced: () => {},
    topicProblem: () => undefined,
  });
  try {
    task.start();
    // The task is initialising its producer, and the client has sent a request that will never be answered.
    await eventually(async () => asked && silent.received() > 0, 10_000, 'a Kafka request sent to the silent broker');
    const started = performance.now();
    await task.stop();
    await publishing.close();
    // The client alone would wait its 10 s request timeout (and retry); the default shutdown timeout is
    // 15 s. The bound is the feature (stop does not wait out the client's own timers), so it stays wall time.
    expect(performance.now() - started).toBeLessThan(5_000);
  } finally {
    silent.close();
  }
}, 60_000);

/** The real outbox, counting the passes that looked for work (each starts with pendingTenants). */
class CountingOutbox extends Outbox {
  looked = 0;
  override pendingTenants(partition: number): Promise<string[]> {
    this.looked++;
    return super.pendingTenants(partition);
  }
}

test('woken on every insert, a task publishes full batches back to back and does not look again once a pass drained its partition', async () => {
  await db.sql`TRUNCATE outbox`;
  const brokers = await testBrokers();
  const topic = `drained.${Bun.randomUUIDv7()}`;
  await createTopic(brokers, topic);
  const metrics = createMetrics();
  const tenants = new Tenants(NO_TENANTS_FILE, quietLog);
  const publishing = createPublishing({
    brokers,
    clientId: 'drained-test',
    compression: 'none',
    guarantee: 'at_least_once',
    transactionalIdPrefix: 'drained-test',
    progressTopic: 'drained-test-progress',
    outboxIdentity: 'drained-test',
  });
  const outbox = new CountingOutbox(db.sql, 16);
  // No idle poll within the test: only full batches and wakes move it. Nothing else the task runs
  // sleeps this long, so each sleep of it begun is the task settling idle after a pass.
  const idleMs = 600_000;
  const clock = new CountingClock();
  const insert = async (from: number, n: number): Promise<void> => {
    const rows: NewOutboxRow[] = Array.from({ length: n }, (_, i) => ({
      tenant_id: 'acme',
      dedupe_key: `k${from + i}`,
      partition: 0,
      topic,
      payload: JSON.stringify({ i: from + i }),
      headers: {},
      request_id: `r${from + i}`,
      traceparent: undefined,
      ingested_at: new Date().toISOString(),
    }));
    await insertRows(db.sql, rows);
    await waitSettled(db.sql);
  };
  const sent = async (): Promise<number> => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`)[0]?.n ?? 0;
  await insert(0, 25);
  const task = new PartitionTask({
    partition: 0,
    outbox,
    producer: publishing.forPartition(0),
    controls: new TenantControls(tenants, metrics, quietLog),
    tenants,
    metrics,
    log: quietLog,
    batchSize: 10,
    batchBytes: 1 << 20,
    pollMs: idleMs,
    clock,
    insertsWake: true,
    maxAttempts: 3,
    retryBaseMs: 100,
    retryMaxMs: 1_000,
    stillOwned: async () => true,
    onFenced: () => {},
    topicProblem: () => undefined,
  });
  try {
    task.start();
    await eventually(async () => (await sent()) === 25, 30_000, '25 rows sent');
    await eventually(async () => clock.begun(idleMs) === 1, 30_000, 'the task idle after the 25 rows');
    // Batches of 10, 10 and 5: the third had less than its grant, so no fourth pass looked before
    // the task went idle.
    expect(outbox.looked).toBe(3);
    await insert(25, 5);
    task.wake();
    await eventually(async () => (await sent()) === 30, 30_000, '30 rows sent');
    await eventually(async () => clock.begun(idleMs) === 2, 30_000, 'the task idle after the 5 rows');
    expect(outbox.looked).toBe(4);
    assertExactlyOnceInOrder(await readTopic(brokers, topic, { expected: 30, timeoutMs: 30_000, graceMs: 500 }), 30);
  } finally {
    await task.stop();
    await publishing.close();
  }
}, 90_000);
