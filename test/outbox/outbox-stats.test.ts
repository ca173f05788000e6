import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { outboxStats, pendingByTenant, statusCountsByTenant, type OutboxTenantStats, type StatusCounts } from '../../src/outbox/counts.ts';
import { markSent } from '../../src/outbox/claims.ts';
import { deleteSent } from '../../src/outbox/retention.ts';
import { createMetrics } from '../../src/metrics.ts';
import { FIRST_SCRAPE_WAIT_MS, OutboxGauges } from '../../src/outbox/outbox-gauges.ts';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import { NO_TENANTS_FILE, Tenants } from '../../src/tenants.ts';
import type { Sql } from '../../src/outbox/db.ts';
import { requeueIds } from '../../src/outbox/replay-requeue.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { silentPort } from '../support/ports.ts';
import { prng, testSeed } from '../support/seed.ts';

const ROWS = 30_000;
const seed = testSeed('outbox-stats');

/** What the gauges must show, counted the slow way: every row read. */
async function scanned(sql: Sql): Promise<Map<string, OutboxTenantStats>> {
  const rows = await sql<{ tenant_id: string; pending: number; dead: number; oldest: number }[]>`
    SELECT tenant_id, count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*) FILTER (WHERE status = 'dead')::int AS dead,
           coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')), 0)::float8 AS oldest
    FROM outbox GROUP BY tenant_id HAVING count(*) FILTER (WHERE status IN ('pending', 'dead')) > 0`;
  return new Map(rows.map((r) => [r.tenant_id, { pending: r.pending, dead: r.dead, oldestPendingSeconds: r.oldest }]));
}

/**
 * What `run` did to the outbox, in scans, read before and after it on one reserved connection inside
 * one transaction. pg_stat_xact_user_tables alone is not the transaction's own: a backend keeps its
 * counts pending until it flushes them, between transactions and at most once a second, so a pooled
 * connection still shows what it ran up to a second earlier (the migration's index builds, the setup's
 * updates and the full count: 9 seq scans on the connection that ran them, seen once the pool handed
 * that connection out). Nothing is flushed inside a
 * transaction, so the difference is exactly what `run` did.
 */
async function outboxScansDuring<T>(sql: Sql, run: (conn: Sql) => Promise<T>): Promise<{ result: T; seq_scan: number; idx_scan: number }> {
  const conn = await sql.reserve();
  try {
    const read = async (): Promise<{ seq_scan: number; idx_scan: number }> => {
      const [row] = await conn<{ seq_scan: number; idx_scan: number }[]>`
        SELECT seq_scan::int, idx_scan::int FROM pg_stat_xact_user_tables WHERE relid = 'outbox'::regclass`;
      if (row === undefined) throw new Error('pg_stat_xact_user_tables has no row for outbox');
      return row;
    };
    await conn`BEGIN`;
    const before = await read();
    const result = await run(conn);
    const after = await read();
    await conn`COMMIT`;
    return { result, seq_scan: after.seq_scan - before.seq_scan, idx_scan: after.idx_scan - before.idx_scan };
  } finally {
    conn.release();
  }
}

describe('outbox gauges and backlog counts read only what waits or died', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    const [template] = await insertRows(db.sql, [
      { tenant_id: 'template', dedupe_key: 't', partition: 0, topic: 'e', payload: '{"n":1}', headers: {}, request_id: 'r', traceparent: undefined, ingested_at: new Date().toISOString() },
    ]);
    // Mostly sent, as the dedupe window keeps them; created_at grows with the id, as inserts make it.
    await db.sql`
      INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, headers, ingested_at, status, sent_at, created_at)
      SELECT 'g' || (g % 50), 'k' || g, (g % 50) % 16, t.topic, t.payload_text, t.headers, now(), 'sent', now(), now() - make_interval(secs => ${ROWS} - g)
      FROM generate_series(1, ${ROWS}) AS g, (SELECT * FROM outbox WHERE id = ${template?.id ?? ''}) AS t`;
    await db.sql`DELETE FROM outbox WHERE tenant_id = 'template'`;
    const next = prng(seed);
    const pending: number[] = [];
    const dead: number[] = [];
    for (let g = 1; g <= ROWS; g++) {
      const r = next();
      if (r < 0.02) pending.push(g);
      else if (r < 0.025) dead.push(g);
    }
    await db.sql`UPDATE outbox SET status = 'pending', sent_at = NULL WHERE dedupe_key = ANY(${db.sql.array(pending.map((g) => `k${g}`))})`;
    await db.sql`UPDATE outbox SET status = 'dead', sent_at = NULL WHERE dedupe_key = ANY(${db.sql.array(dead.map((g) => `k${g}`))})`;
    await db.sql`VACUUM ANALYZE outbox`;
  });
  afterAll(() => db.drop());

  test(`per-tenant pending, dead and oldest pending equal a full count (seed ${seed})`, async () => {
    const truth = await scanned(db.sql);
    const stats = await outboxStats(db.sql);
    expect(stats.size).toBe(truth.size);
    for (const [tenant, t] of truth) {
      const s = stats.get(tenant);
      expect({ tenant, pending: s?.pending, dead: s?.dead }).toEqual({ tenant, pending: t.pending, dead: t.dead });
      expect(Math.abs((s?.oldestPendingSeconds ?? -1) - t.oldestPendingSeconds)).toBeLessThan(1);
    }
    const backlog = await pendingByTenant(db.sql);
    expect(new Map([...backlog].sort())).toEqual(new Map([...truth].filter(([, t]) => t.pending > 0).map(([k, t]) => [k, t.pending] as const).sort()));
  });

  test('the scan count is what the measured statements did: a full count is a seq scan, and the connection\'s earlier ones do not count', async () => {
    // One connection, so the measurements run where the earlier full counts ran: the second count's
    // scan is flushed at most a second after the first's, so it is still pending when they start.
    const session = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await scanned(session);
      await scanned(session);
      expect((await outboxScansDuring(session, (conn) => scanned(conn))).seq_scan).toBe(1);
      expect((await outboxScansDuring(session, (conn) => pendingByTenant(conn))).seq_scan).toBe(0);
    } finally {
      await session.end();
    }
  });

  test('neither a scrape nor a backlog refresh scans the table: no sequential scan of the outbox', async () => {
    const scans = await outboxScansDuring(db.sql, async (conn) => {
      await outboxStats(conn);
      await pendingByTenant(conn);
    });
    expect(scans.seq_scan).toBe(0);
    expect(scans.idx_scan).toBeGreaterThan(0);
  });

  test('the admin overview counts every status right without reading the sent rows, as rows are sent, replayed and deleted', async () => {
    const byStatus = async (sql: Sql): Promise<Map<string, StatusCounts>> => {
      const rows = await sql<({ tenant_id: string } & StatusCounts)[]>`
        SELECT tenant_id, count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*) FILTER (WHERE status = 'sent')::int AS sent,
               count(*) FILTER (WHERE status = 'dead')::int AS dead
        FROM outbox GROUP BY tenant_id`;
      return new Map(rows.map(({ tenant_id, ...c }) => [tenant_id, c]));
    };
    const sorted = (m: Map<string, StatusCounts>): [string, StatusCounts][] => [...m].sort(([a], [b]) => a.localeCompare(b));
    // Rows inserted as sent (above) were counted by the insert trigger.
    expect(sorted(await statusCountsByTenant(db.sql))).toEqual(sorted(await byStatus(db.sql)));

    const ids = async (status: string, n: number): Promise<string[]> =>
      (await db.sql<{ id: string }[]>`SELECT id::text FROM outbox WHERE status = ${status} ORDER BY id LIMIT ${n}`).map((r) => r.id);
    expect(await markSent(db.sql, await ids('pending', 200))).toBe(200);
    expect((await requeueIds(db.sql, await ids('sent', 150))).length).toBe(150);
    expect(await deleteSent(db.sql, 0, 1_000)).toBe(1_000);
    await db.sql`INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload_text, ingested_at) VALUES ('new-tenant', 'n1', 3, 'e', '{}', now())`;
    await markSent(db.sql, await ids('pending', 1_000_000));
    const truth = await byStatus(db.sql);
    expect(truth.get('new-tenant')).toEqual({ pending: 0, sent: 1, dead: 0 });

    const { result: counts, seq_scan } = await outboxScansDuring(db.sql, (conn) => statusCountsByTenant(conn));
    expect(sorted(counts)).toEqual(sorted(truth));
    expect(seq_scan).toBe(0);
    // And the plan, for whoever reads this: the sent counts come from their own small table.
    const plan = (await db.sql.unsafe<{ 'QUERY PLAN': string }[]>('EXPLAIN SELECT tenant_id, sent FROM outbox_sent_counts WHERE sent > 0')).map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).not.toContain('on outbox ');
  });
});

describe('OutboxGauges for a scrape', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  test('the first scrape waits for the counts; later ones render the previous refresh and start the next', async () => {
    const metrics = createMetrics();
    const gauges = new OutboxGauges(new Outbox(db.sql, 16), new Tenants(NO_TENANTS_FILE, quietLog), metrics);
    const pending = async (): Promise<number | undefined> => (await metrics.outboxPending.get()).values.find((v) => v.labels.tenant === 'a')?.value;
    const row = (key: string): NewOutboxRow => ({ tenant_id: 'a', dedupe_key: key, partition: 0, topic: 'e', payload: '{}', headers: {}, request_id: 'r', traceparent: undefined, ingested_at: new Date().toISOString() });
    const errors: unknown[] = [];
    await insertRows(db.sql, [row('k1')]);
    await gauges.forScrape((err) => errors.push(err));
    expect(await pending()).toBe(1);
    await insertRows(db.sql, [row('k2')]);
    await gauges.forScrape((err) => errors.push(err));
    // Rendered now: still the previous refresh's count, while the next one runs.
    expect(await pending()).toBe(1);
    await eventually(async () => (await pending()) === 2, 5_000, 'the background refresh');
    expect(errors).toEqual([]);
  });

  test('a database that does not answer costs the first scrape FIRST_SCRAPE_WAIT_MS at most, and no scrape an error (outside tester: 503 from a node of two workers)', async () => {
    const silent = await silentPort();
    const sql = postgres(`postgres://postgres@127.0.0.1:${silent.port}/postgres`, { connect_timeout: 3, max: 2, onnotice: () => {} });
    try {
      const metrics = createMetrics();
      const gauges = new OutboxGauges(new Outbox(sql, 16), new Tenants(NO_TENANTS_FILE, quietLog), metrics);
      const errors: unknown[] = [];
      const started = performance.now();
      await gauges.forScrape((err) => errors.push(err));
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(FIRST_SCRAPE_WAIT_MS - 50);
      expect(waited).toBeLessThan(FIRST_SCRAPE_WAIT_MS + 1_000);
      // Later scrapes do not wait at all while the refresh in flight hangs.
      const again = performance.now();
      await gauges.forScrape((err) => errors.push(err));
      expect(performance.now() - again).toBeLessThan(100);
      expect(await metrics.registry.metrics()).toContain('sluice_ingest_body_bytes 0');
      // The hung refresh fails in the end, to onError, not as an unhandled rejection.
      await eventually(async () => errors.length === 1, 10_000, 'the refresh to fail');
      expect(String(errors[0])).toContain('CONNECT_TIMEOUT');
    } finally {
      await sql.end({ timeout: 0 });
      silent.close();
    }
  }, 20_000);
});
