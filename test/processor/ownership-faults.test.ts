import { afterAll, beforeAll, expect, test } from 'bun:test';
import postgres from 'postgres';
import { createMetrics } from '../../src/metrics.ts';
import { openDatabase, type Database } from '../../src/outbox/db.ts';
import { PartitionOwnership, type OwnershipOptions } from '../../src/processor/ownership.ts';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.ts';
import { quietLog } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

let cluster: PgCluster;
let db: Database;
beforeAll(async () => {
  cluster = await startPgCluster();
  db = await openDatabase({ url: cluster.url, dataDir: '', pool: 4 }, quietLog);
});
afterAll(async () => {
  await db.close();
  await cluster.destroy();
});

const PARTITIONS = 4;
/** Absence is checked after this many whole rebalance passes (counted, not timed). */
const PASSES_LATER = 10;

/** An instance on the test cluster's session, quiet, with the tests' partitions and a 1-s give-up; `o` sets the rest. */
function ownershipOn(o: Pick<OwnershipOptions, 'rebalanceMs' | 'acquired' | 'releasing' | 'canProcess' | 'canProcessNow'> & Partial<OwnershipOptions>): PartitionOwnership {
  return new PartitionOwnership({
    lockSession: (onClose) => db.session(onClose),
    exclusive: false,
    partitions: PARTITIONS,
    log: quietLog,
    metrics: createMetrics(),
    unreachableReleaseMs: 1_000,
    ...o,
  });
}

async function gauge(metrics: ReturnType<typeof createMetrics>): Promise<number> {
  return (await metrics.partitionsOwned.get()).values[0]?.value ?? -1;
}

/**
 * Partition locks the cluster says are granted, seen from a session of its own (not one of the
 * terminated ones); -1 while Postgres does not answer.
 */
async function locksHeld(): Promise<number> {
  const observer = postgres(cluster.url, { max: 1, onnotice: () => {}, connection: { application_name: 'observer' } });
  try {
    const [row] = await observer<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x511ce0}::int::oid AND granted`;
    return row?.n ?? 0;
  } catch {
    return -1;
  } finally {
    await observer.end({ timeout: 1 });
  }
}

test('partition locks lost to pg_terminate_backend and to an immediate stop are taken again; the gauge and tasks follow', async () => {
  const metrics = createMetrics();
  const running = new Set<number>();
  let overlaps = 0;
  // Each rebalance pass asks canProcess first, also the ones that then fail to reach Postgres.
  let passes = 0;
  const ownership = ownershipOn({
    rebalanceMs: 200,
    metrics,
    acquired: (p) => {
      if (running.has(p)) overlaps++;
      running.add(p);
    },
    releasing: async (p) => {
      running.delete(p);
    },
    canProcess: () => {
      passes++;
      return true;
    },
    canProcessNow: async () => true,
  });
  ownership.start();
  try {
    await eventually(async () => ownership.owned.size === PARTITIONS && (await gauge(metrics)) === PARTITIONS, 10_000, 'all partitions owned');
    expect(await locksHeld()).toBe(PARTITIONS);

    expect(await cluster.terminate('sluice')).toBeGreaterThan(0);
    // The close event stops every task at once: nothing runs on a lock that is gone.
    await eventually(async () => running.size === 0 || (await locksHeld()) === running.size, 5_000, 'tasks stopped with the session');
    await eventually(async () => ownership.owned.size === PARTITIONS && (await locksHeld()) === PARTITIONS, 10_000, 'locks taken again after pg_terminate_backend');
    expect(await gauge(metrics)).toBe(PARTITIONS);

    await cluster.stop('immediate');
    await eventually(async () => ownership.owned.size === 0 && running.size === 0 && (await gauge(metrics)) === 0, 5_000, 'nothing owned while Postgres is down');
    const down = passes;
    await eventually(async () => passes > down + PASSES_LATER, 10_000, 'more ownership passes with Postgres down');
    expect(ownership.owned.size).toBe(0);
    await cluster.start();
    await eventually(async () => ownership.owned.size === PARTITIONS && (await locksHeld()) === PARTITIONS, 15_000, 'locks taken again after Postgres restarted');
    expect(await gauge(metrics)).toBe(PARTITIONS);
    expect([...running].sort()).toEqual([0, 1, 2, 3]);
    expect(overlaps).toBe(0);
  } finally {
    await ownership.stop();
  }
  expect(await locksHeld()).toBe(0);
}, 60_000);

async function members(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = ${0x511ce1}::int::oid AND granted`;
  return row?.n ?? 0;
}

test('an instance that cannot reach Kafka is no member and takes no partition; it gives its partitions up after a bounded time', async () => {
  let sickReaches = false;
  // Which instance runs each partition: one must never start a partition the other still runs.
  const runner = new Map<number, string>();
  let overlaps = 0;
  const instance = (name: string, canProcess: () => boolean): PartitionOwnership =>
    ownershipOn({
      rebalanceMs: 100,
      acquired: (p) => {
        if (runner.has(p)) overlaps++;
        runner.set(p, name);
      },
      releasing: async (p) => {
        if (runner.get(p) === name) runner.delete(p);
      },
      canProcess,
      canProcessNow: async () => canProcess(),
    });
  const healthy = instance('healthy', () => true);
  let sickPasses = 0;
  const sick = instance('sick', () => {
    sickPasses++;
    return sickReaches;
  });
  sick.start();
  healthy.start();
  try {
    await eventually(async () => healthy.owned.size === PARTITIONS, 10_000, 'the healthy instance owns every partition');
    // Many rebalances later the sick one still holds nothing and is not counted.
    const owning = sickPasses;
    await eventually(async () => sickPasses > owning + PASSES_LATER, 10_000, 'more passes of the sick instance');
    expect(sick.owned.size).toBe(0);
    expect(await members()).toBe(1);
    expect(healthy.owned.size).toBe(PARTITIONS);

    sickReaches = true;
    sick.wake();
    await eventually(async () => healthy.owned.size === PARTITIONS / 2 && sick.owned.size === PARTITIONS / 2, 10_000, 'shared once Kafka answers');
    expect(await members()).toBe(2);

    sickReaches = false;
    await eventually(async () => sick.owned.size === 0 && healthy.owned.size === PARTITIONS && (await members()) === 1, 10_000, 'taken over from the instance that lost Kafka');
    expect([...runner.values()].every((n) => n === 'healthy')).toBe(true);
    expect(overlaps).toBe(0);
  } finally {
    await Promise.all([sick.stop(), healthy.stop()]);
  }
}, 60_000);

test('an instance whose last probe failed asks Kafka again before giving its partitions up, and keeps them when it answers', async () => {
  // The background probe's answer is up to an interval old: a broker back since must not move partitions.
  let lastProbeOk = true;
  let answersNow = true;
  let asked = 0;
  let passes = 0;
  const ownership = ownershipOn({
    rebalanceMs: 50,
    acquired: () => {},
    releasing: async () => {},
    canProcess: () => {
      passes++;
      return lastProbeOk;
    },
    canProcessNow: async () => {
      asked++;
      return answersNow;
    },
    unreachableReleaseMs: 200,
  });
  ownership.start();
  try {
    await eventually(async () => ownership.owned.size === PARTITIONS, 10_000, 'all partitions owned');
    expect(asked).toBe(0);

    lastProbeOk = false;
    await eventually(async () => asked >= 3, 10_000, 'asked afresh past the give-up delay');
    const later = passes;
    await eventually(async () => passes > later + PASSES_LATER, 10_000, 'more passes while Kafka answers when asked');
    expect(ownership.owned.size).toBe(PARTITIONS);
    expect(await locksHeld()).toBe(PARTITIONS);

    answersNow = false;
    await eventually(async () => ownership.owned.size === 0 && (await locksHeld()) === 0, 10_000, 'given up once Kafka does not answer when asked');
    expect(await members()).toBe(0);
  } finally {
    await ownership.stop();
  }
}, 60_000);
