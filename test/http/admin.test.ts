import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/log.ts';
import { readTopic, testBrokers, type ConsumedRecord } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually, postEvent, startSluice, type TestSluice } from '../support/sluice.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';

const ACME = newToken('acme');
const BETA = newToken('beta');
const ADMIN = newToken('admin');
const ACME_TOPIC = `acme.${Bun.randomUUIDv7()}`;

const dir = mkdtempSync(join(tmpdir(), 'sluice-admin-'));
const logLines: string[] = [];
let db: TestDatabase;
let brokers: string[];
let sluice: TestSluice;

beforeAll(async () => {
  db = await createTestDatabase({ migrate: false });
  brokers = await testBrokers();
  const tenantsFile = join(dir, 'tenants.json');
  writeTenantsFile(tenantsFile, { acme: { tokens: [ACME], topic: ACME_TOPIC }, beta: { tokens: [BETA] }, idle: { tokens: [] } });
  sluice = await startSluice(
    {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_TENANTS_FILE: tenantsFile,
      SLUICE_ADMIN_TOKEN: ADMIN,
      // The forwarder alone fills the outbox: in sync mode it can race the write path's own insert and
      // answer a fresh write as a duplicate, a write-path issue this file does not test.
      SLUICE_WRITE_MODE: 'fast_ack',
    },
    { log: createLogger({ level: 'debug', write: (line) => logLines.push(line) }) },
  );
}, 120_000);

afterAll(async () => {
  await sluice?.stop();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${sluice.url}/admin${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

/** Posts one event per key as `tenant`, waits until all are published (status sent), returns their outbox ids. */
async function publishAll(token: string, tenant: string, keys: string[]): Promise<Map<string, string>> {
  for (const key of keys) {
    const res = await postEvent(sluice.url, { dedupe_key: key, payload: { key } }, { Authorization: `Bearer ${token}` });
    expect([res.status, await res.json()]).toEqual([202, expect.objectContaining({ tenant_id: tenant, dedupe_key: key, duplicate: false })]);
  }
  await eventually(async () => {
    const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = ${tenant} AND status = 'sent'`;
    return r?.n === keys.length;
  }, 30_000, `${tenant}'s records sent`);
  const rows = await db.sql<{ id: string; dedupe_key: string }[]>`SELECT id::text, dedupe_key FROM outbox WHERE tenant_id = ${tenant}`;
  return new Map(rows.map((r) => [r.dedupe_key, r.id]));
}

const replayed = (records: ConsumedRecord[]) => records.filter((r) => r.headers.replay === 'true');

describe('replay through the admin API, read back from Kafka', () => {
  test('by ids: the records are published again with replay: true and the same key; unknown ids are missing', async () => {
    const ids = await publishAll(ACME, 'acme', ['k1', 'k2', 'k3']);
    const first = await readTopic(brokers, ACME_TOPIC, { expected: 3 });
    expect(first.map((r) => r.key)).toEqual(['acme:k1', 'acme:k2', 'acme:k3']);
    expect(replayed(first)).toEqual([]);

    const k1 = ids.get('k1') ?? '';
    const k3 = ids.get('k3') ?? '';
    const res = await admin('POST', '/outbox/replay', { ids: [k1, Number(k3), '987654321', k1] });
    expect(res).toEqual({ status: 200, body: { requeued: 2, missing: ['987654321'] } });

    const all = await readTopic(brokers, ACME_TOPIC, { expected: 5 });
    expect(all).toHaveLength(5);
    const again = replayed(all);
    expect(again.map((r) => [r.key, r.headers.outbox_id, r.value])).toEqual([
      ['acme:k1', k1, '{"key":"k1"}'],
      ['acme:k3', k3, '{"key":"k3"}'],
    ]);
    const rows = await db.sql`SELECT dedupe_key, replays, attempts, last_error FROM outbox WHERE tenant_id = 'acme' ORDER BY id`;
    expect([...rows]).toEqual([
      { dedupe_key: 'k1', replays: 1, attempts: 0, last_error: null },
      { dedupe_key: 'k2', replays: 0, attempts: 0, last_error: null },
      { dedupe_key: 'k3', replays: 1, attempts: 0, last_error: null },
    ]);
    const audit = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'admin' && l.route === '/admin/outbox/replay');
    expect(audit).toMatchObject({ level: 'info', method: 'POST', status: 200, requeued: 2, missing: 1 });
    const metrics = await (await fetch(`${sluice.url}/metrics`)).text();
    expect(metrics).toContain('sluice_replayed_total{tenant="acme",kind="ids"} 2');
  }, 90_000);

  test('tenant-wide: since (inclusive), until (exclusive), status, limit and dry_run each select what they say', async () => {
    const keys = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5'];
    await publishAll(BETA, 'beta', keys);
    await readTopic(brokers, sluice.topic, { expected: 6 });
    // Two rows a month, on the month's first instant; b5 became dead.
    await db.sql`
      UPDATE outbox SET created_at = (CASE WHEN dedupe_key IN ('b0', 'b1') THEN '2026-01-01T00:00:00Z'
                                           WHEN dedupe_key IN ('b2', 'b3') THEN '2026-02-01T00:00:00Z'
                                           ELSE '2026-03-01T00:00:00Z' END)::timestamptz
      WHERE tenant_id = 'beta'`;
    await db.sql`UPDATE outbox SET status = 'dead', attempts = 10, last_error = 'gave up' WHERE tenant_id = 'beta' AND dedupe_key = 'b5'`;
    const replays = async () =>
      Object.fromEntries(
        (await db.sql<{ dedupe_key: string; replays: number }[]>`SELECT dedupe_key, replays FROM outbox WHERE tenant_id = 'beta'`).map((r) => [
          r.dedupe_key,
          r.replays,
        ]),
      );

    const feb = '2026-02-01T00:00:00Z';
    const dry = await admin('POST', '/outbox/replay/tenant', { tenant_id: 'beta', since: feb, dry_run: true });
    expect(dry).toEqual({ status: 200, body: { matched: 4, requeued: 0 } });
    expect(await replays()).toEqual({ b0: 0, b1: 0, b2: 0, b3: 0, b4: 0, b5: 0 });

    expect(await admin('POST', '/outbox/replay/tenant', { tenant_id: 'beta', until: feb })).toEqual({
      status: 200,
      body: { matched: 2, requeued: 2 },
    });
    expect(await admin('POST', '/outbox/replay/tenant', { tenant_id: 'beta', status: ['dead'] })).toEqual({
      status: 200,
      body: { matched: 1, requeued: 1 },
    });
    expect(
      await admin('POST', '/outbox/replay/tenant', { tenant_id: 'beta', since: feb, until: '2026-03-01T00:00:00+00:00', limit: 1 }),
    ).toEqual({ status: 200, body: { matched: 2, requeued: 1 } });
    expect(await admin('POST', '/outbox/replay/tenant', { tenant_id: 'nobody' })).toEqual({ status: 200, body: { matched: 0, requeued: 0 } });
    expect(await replays()).toEqual({ b0: 1, b1: 1, b2: 1, b3: 0, b4: 0, b5: 1 });

    const all = await readTopic(brokers, sluice.topic, { expected: 10 });
    expect(all).toHaveLength(10);
    expect(replayed(all).map((r) => r.key).sort()).toEqual(['beta:b0', 'beta:b1', 'beta:b2', 'beta:b5']);
    await eventually(async () => {
      const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'beta' AND status = 'sent'`;
      return r?.n === 6;
    }, 30_000, 'the dead record sent after its replay');
    const metrics = await (await fetch(`${sluice.url}/metrics`)).text();
    expect(metrics).toContain('sluice_replayed_total{tenant="beta",kind="tenant"} 4');
  }, 90_000);

  test('GET /admin/tenants lists every tenant of the file and of the outbox with counts, breaker and quota', async () => {
    const res = await admin('GET', '/tenants');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      tenants: [
        { tenant_id: 'acme', configured: true, pending: 0, sent: 3, dead: 0, breaker: 'closed', quota_tokens: expect.any(Number) },
        { tenant_id: 'beta', configured: true, pending: 0, sent: 6, dead: 0, breaker: 'closed', quota_tokens: expect.any(Number) },
        { tenant_id: 'idle', configured: true, pending: 0, sent: 0, dead: 0, breaker: 'closed', quota_tokens: 2000 },
      ],
    });
  });

  test('tenant-wide past the limit: matched is the true total, requeued what the limit allowed', async () => {
    const topic = `gamma.${Bun.randomUUIDv7()}`;
    await db.sql`
      INSERT INTO outbox (tenant_id, dedupe_key, partition, topic, payload, ingested_at, status)
      SELECT 'gamma', 'g-' || i, 0, ${topic}, jsonb_build_object('i', i), now(), 'dead' FROM generate_series(1, 12000) AS i`;
    expect(await admin('POST', '/outbox/replay/tenant', { tenant_id: 'gamma', status: ['dead'], dry_run: true })).toEqual({
      status: 200,
      body: { matched: 12000, requeued: 0 },
    });
    expect(await admin('POST', '/outbox/replay/tenant', { tenant_id: 'gamma', status: ['dead'], limit: 5 })).toEqual({
      status: 200,
      body: { matched: 12000, requeued: 5 },
    });
    const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'gamma' AND replays = 1`;
    expect(r?.n).toBe(5);
    await db.sql`DELETE FROM outbox WHERE tenant_id = 'gamma' AND status = 'dead'`;
  }, 60_000);

  test('the logs never contain a token', () => {
    const all = logLines.join('');
    expect(all).toContain('"msg":"admin"');
    for (const token of [ACME, BETA, ADMIN]) expect(all).not.toContain(token);
  });
});
