import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../../src/outbox/db.ts';
import { openChecked } from '../../src/outbox/open-checked.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
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
    const pending = await super.pendingPartitions(partitions);
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

describe('a processor alone polls the outbox once for all its partitions', () => {
  let db: TestDatabase;
  let brokers: string[];
  let database: Database | undefined;
  let processing: Processing | undefined;
  const topic = `poll.${Bun.randomUUIDv7()}`;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-poll-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    await createTopic(brokers, topic);
  }, 120_000);

  afterAll(async () => {
    await processing?.close();
    await database?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rows written by another node while every partition idles wake their tasks at the first poll that finds them', async () => {
    const tenantsFile = join(dir, 'tenants.json');
    writeFileSync(tenantsFile, JSON.stringify({}));
    const config = processConfig(db, brokers, { tenantsFile, partitions: PARTITIONS, prefix: 'poll' });
    // The processor as `sluice process` runs it (see roles/start.ts), on an outbox that counts.
    database = await openChecked(config, quietLog);
    const outbox = new PollCountingOutbox(database.sql, config.partitions);
    const { tenants, metrics } = openTenantMetrics(config, quietLog);
    const controls = new TenantControls(tenants, metrics, quietLog);
    processing = await startProcessing({ config, db: database, outbox, brokers, tenants, controls, metrics, log: quietLog });
    await eventually(async () => processing?.processor.owned.size === PARTITIONS, 30_000, 'every partition owned');
    // Each task has found its partition empty and waits; only the processor's poll can find the rows.
    await eventually(async () => outbox.looked.size === PARTITIONS, 30_000, 'every task looked once');
    for (let round = 0; round < 3; round++) {
      const before = await sentCount();
      await fillOutbox(db, { topic, records: 200, tenants: 20, partitions: PARTITIONS, from: round * 200 });
      await eventually(async () => (await sentCount()) === before + 200, 30_000, `round ${round} sent`);
    }
    // A task that found its partition empty looked again at the first poll that found rows there (a
    // poll in flight meanwhile may add one or two). Its own idle poll (5 s) would have come only after
    // some 250 polls of SLUICE_POLL_MS=20: counted in polls, so a slow machine cannot fail it.
    expect(outbox.pollsToWake.filter((n) => n > 0).length).toBeGreaterThan(0);
    expect(Math.max(...outbox.pollsToWake)).toBeLessThanOrEqual(3);
    const records = await readTopic(brokers, topic, { expected: 600, timeoutMs: 60_000, graceMs: 1_000 });
    assertExactlyOnceInOrder(records, 600);
  }, 120_000);

  async function sentCount(): Promise<number> {
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    return row?.n ?? 0;
  }
});
