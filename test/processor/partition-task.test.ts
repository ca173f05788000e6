import { afterAll, beforeAll, expect, test } from 'bun:test';
import { createMetrics } from '../../src/metrics.ts';
import { PartitionTask } from '../../src/processor/partition-task.ts';
import { createPublishing } from '../../src/processor/publisher.ts';
import { TenantControls } from '../../src/processor/tenant-controls.ts';
import { NO_TENANTS_FILE, Tenants } from '../../src/tenants.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { silentPort } from '../support/ports.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

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
