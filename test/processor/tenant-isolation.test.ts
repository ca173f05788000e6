import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '../../src/tenant-tokens.ts';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';
import { eventually, startSluice, type TestSluice } from '../support/sluice.ts';

/**
 * Every tenant shares one outbox partition (SLUICE_PARTITIONS=1), the hardest case for isolation:
 * one processor task serves them all.
 */
describe('one tenant failing or bursting does not stall the others', () => {
  let db: TestDatabase;
  let brokers: string[];
  let sluice: TestSluice;
  let dir: string;
  const tinyTopic = `tiny.${Bun.randomUUIDv7()}`;
  const floodTopic = `flood.${Bun.randomUUIDv7()}`;
  // "bad"'s default topic and five more like it: a topic's first record refused for its size is a
  // verdict of its own (the rest over its limit die with it: the flood test).
  const tinies = [tinyTopic, ...[1, 2, 3, 4, 5].map((i) => `${tinyTopic}-${i}`)];
  const token = (tenant: string) => `token-${tenant}-secret`;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    brokers = await testBrokers();
    dir = mkdtempSync(join(tmpdir(), 'sluice-isolation-'));
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: brokers });
    try {
      // Every record of the tenant "bad" is too large for its topic.
      await admin.createTopics({ topics: [...tinies, floodTopic], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '600' }] });
    } finally {
      await admin.close();
    }
    const entry = (tenant: string, extra: Record<string, unknown> = {}) => ({ tokens: [`sha256:${sha256(token(tenant)).toString('hex')}`], ...extra });
    writeFileSync(
      join(dir, 'tenants.json'),
      JSON.stringify({
        tenants: {
          good: entry('good'),
          quiet: entry('quiet'),
          bad: entry('bad', { topic: tinyTopic, breaker: { failure_threshold: 3, reset_ms: 2_000 } }),
          loud: entry('loud', { quota: { rate: 20, burst: 20 } }),
          slow: entry('slow', { quota: { rate: 0.5, burst: 1 }, max_pending: 5 }),
          flood: entry('flood'),
        },
      }),
    );
    sluice = await startSluice({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_TENANTS_FILE: join(dir, 'tenants.json'),
      SLUICE_PARTITIONS: '1',
      SLUICE_RETRY_BASE_MS: '100',
    });
  }, 120_000);

  afterAll(async () => {
    await sluice?.stop();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  function post(tenant: string, body: unknown): Promise<Response> {
    return fetch(`${sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token(tenant)}` },
      body: JSON.stringify(body),
    });
  }

  function postBatch(tenant: string, events: unknown[]): Promise<Response> {
    return fetch(`${sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', Authorization: `Bearer ${token(tenant)}` },
      body: events.map((e) => JSON.stringify(e)).join('\n'),
    });
  }

  async function statuses(tenant: string): Promise<Record<string, number>> {
    const rows = await db.sql<{ status: string; n: number }[]>`
      SELECT status, count(*)::int AS n FROM outbox WHERE tenant_id = ${tenant} GROUP BY status`;
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async function breakerState(tenant: string): Promise<number | undefined> {
    const text = await (await fetch(`${sluice.url}/metrics`)).text();
    const m = new RegExp(`^sluice_breaker_state\\{tenant="${tenant}"\\} (\\d)`, 'm').exec(text);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  }

  test('a tenant whose records Kafka refuses: its breaker opens, the others keep flowing, and it recovers', async () => {
    const big = { blob: 'x'.repeat(2_000) };
    // One record for each of six topics that refuse it, so each is a verdict of its own.
    expect((await postBatch('bad', tinies.map((topic, i) => ({ dedupe_key: `bad-${i}`, topic, payload: big })))).status).toBe(202);
    // Half of "good"'s records while "bad"'s fail, half after its breaker opened.
    for (let i = 0; i < 10; i++) expect((await post('good', { dedupe_key: `good-${i}`, payload: { i } })).status).toBe(202);
    // Rejected for good: dead at once, each a failure for the breaker; three open it and the
    // rest of the tenant's rows wait instead of being tried.
    await eventually(async () => (await breakerState('bad')) === 1, 10_000, 'breaker of "bad" open');
    for (let i = 10; i < 20; i++) expect((await post('good', { dedupe_key: `good-${i}`, payload: { i } })).status).toBe(202);
    expect(await statuses('bad')).toEqual({ dead: 3, pending: 3 });
    const [deadRow] = await db.sql<{ last_error: string }[]>`SELECT last_error FROM outbox WHERE tenant_id = 'bad' AND status = 'dead' LIMIT 1`;
    expect(deadRow?.last_error).toContain('MESSAGE_TOO_LARGE');

    await eventually(async () => (await statuses('good')).sent === 20, 10_000, 'every "good" record sent');
    // Isolation by accounting rather than by the clock (a wall-clock bound failed on a loaded
    // machine): no "good" row was ever charged an attempt or an error for "bad"'s failures, all were
    // sent while "bad"'s rows still waited behind its open breaker, and "good"'s breaker stayed closed.
    const charged = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'good' AND (attempts > 0 OR last_error IS NOT NULL)`;
    expect(charged[0]?.n).toBe(0);
    expect(await statuses('bad')).toEqual({ dead: 3, pending: 3 });
    expect(await breakerState('good')).toBe(0);

    // The failure is removed; after reset_ms the next batch is the probe, and it closes the breaker.
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: brokers });
    try {
      await admin.alterConfigs({
        resources: tinies.map((resourceName) => ({ resourceType: ConfigResourceTypes.TOPIC, resourceName, configs: [{ name: 'max.message.bytes', value: '1048576' }] })),
      });
    } finally {
      await admin.close();
    }
    await eventually(async () => (await statuses('bad')).sent === 3, 15_000, 'the waiting "bad" records published');
    expect(await breakerState('bad')).toBe(0);
    expect(await statuses('bad')).toEqual({ dead: 3, sent: 3 });
  }, 60_000);

  test('regression: a flood of records too large for their topic, of mixed sizes over several claims, dies at once, and the tenant\'s next write to another topic is published', async () => {
    const aborted = async (): Promise<number> => Number(/^sluice_kafka_transactions_total\{result="aborted"\} (\d+)$/m.exec(await (await fetch(`${sluice.url}/metrics`)).text())?.[1] ?? 0);
    const abortedBefore = await aborted();
    const rand = prng(testSeed('too-large flood'));
    const FLOOD = 1_000;
    // ~3.5 MB: four claims of SLUICE_PUBLISH_MAX_BYTES' 900,000; keys and payloads of every size.
    const lines = Array.from({ length: FLOOD }, (_, i) => ({
      dedupe_key: `flood-${i}-${'k'.repeat(Math.floor(rand() * 40))}`,
      topic: floodTopic,
      payload: { blob: 'x'.repeat(2_500 + Math.floor(rand() * 1_000)) },
    }));
    for (let i = 0; i < FLOOD; i += 250) expect((await postBatch('flood', lines.slice(i, i + 250))).status).toBe(202);
    expect((await post('flood', { dedupe_key: 'flood-good', payload: { ok: true } })).status).toBe(202);
    // Outside tester: ~2,950 such rows died one a transaction, then one a breaker probe once three
    // had opened the tenant's breaker; its later writes, to any topic, waited behind them.
    await eventually(async () => (await statuses('flood')).dead === FLOOD, 20_000, 'every too-large record dead');
    await eventually(async () => (await statuses('flood')).sent === 1, 20_000, 'the tenant\'s good record sent');
    const rows = await db.sql<{ attempts: number; last_error: string | null }[]>`
      SELECT attempts, last_error FROM outbox WHERE tenant_id = 'flood' AND status = 'dead' ORDER BY id`;
    expect(rows).toHaveLength(FLOOD);
    expect(rows.every((r) => r.attempts === 1 && r.last_error?.startsWith('MESSAGE_TOO_LARGE'))).toBe(true);
    // One record tried alone gave the topic's limit; every other died by it, in its claim or before
    // later claims were sent.
    const tried = rows.filter((r) => !r.last_error?.includes('(not sent: one over it was refused alone)'));
    expect(tried).toHaveLength(1);
    expect(rows.filter((r) => r.last_error === `MESSAGE_TOO_LARGE: alone, its record batch is over topic ${floodTopic}'s max.message.bytes of 600 (not sent: one over it was refused alone)`)).toHaveLength(FLOOD - 1);
    // One verdict: the breaker, which opens at 3 failures (the default), stayed closed.
    expect(await breakerState('flood')).toBe(0);
    // The first claim's batch and its first record alone: not one transaction a record, nor a claim.
    expect((await aborted()) - abortedBefore).toBeLessThanOrEqual(4);
  }, 60_000);

  test('a tenant bursting 10x its quota is throttled to it, and a quiet tenant is not delayed', async () => {
    const burst = Array.from({ length: 200 }, (_, i) => ({ dedupe_key: `loud-${i}`, payload: { i } }));
    expect((await postBatch('loud', burst)).status).toBe(202);
    // The quiet tenant writes while the loud one is being throttled: its burst went out, the rest waits.
    await eventually(async () => ((await statuses('loud')).sent ?? 0) >= 20, 10_000, 'the loud burst sent');
    expect((await post('quiet', { dedupe_key: 'q', payload: { hello: 'world' } })).status).toBe(202);
    await eventually(async () => (await statuses('quiet')).sent === 1, 5_000, 'the quiet record sent');
    // Not queued behind the loud backlog (by accounting, not by the clock): when the quiet record
    // went out, most of the loud burst was still waiting for its quota (20 a second, 9 s for all).
    const [overtaken] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox
      WHERE tenant_id = 'loud' AND sent_at <= (SELECT sent_at FROM outbox WHERE tenant_id = 'quiet')`;
    expect(overtaken?.n ?? Infinity).toBeLessThan(100);

    // Throttled to the quota, measured on the database's clock from the burst's arrival to this
    // read (one read: publishing goes on between two of them): burst 20 at once, then 20 a second.
    await eventually(async () => ((await statuses('loud')).sent ?? 0) >= 60, 10_000, 'loud past two seconds of its quota');
    const [loud] = await db.sql<{ sent: number; pending: number; elapsed: number }[]>`
      SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent, count(*) FILTER (WHERE status = 'pending')::int AS pending,
        extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS elapsed
      FROM outbox WHERE tenant_id = 'loud'`;
    const sent = loud?.sent ?? 0;
    expect(sent).toBeGreaterThanOrEqual(20);
    expect(sent).toBeLessThanOrEqual(20 + Math.ceil(20 * (loud?.elapsed ?? 0)) + 5);
    expect(loud?.pending).toBe(200 - sent);
    // The throttling shows: the loud tenant's series counts it, the quiet one's stays at 0.
    const metrics = await (await fetch(`${sluice.url}/metrics`)).text();
    const throttled = (tenant: string): number => Number(new RegExp(`^sluice_quota_throttled_total\\{tenant="${tenant}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
    expect(throttled('loud')).toBeGreaterThan(10);
    expect(throttled('quiet')).toBe(0);
  }, 30_000);

  test('past max_pending a tenant gets 429 backlog_full with Retry-After; other tenants do not', async () => {
    const answers: Response[] = [];
    for (let i = 0; i < 8; i++) answers.push(await post('slow', { dedupe_key: `slow-${i}`, payload: { i } }));
    const accepted = answers.filter((r) => r.status === 202).length;
    const refused = answers.filter((r) => r.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    const [first] = refused;
    expect(Number(first?.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1);
    const body = (await first?.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('backlog_full');
    expect(body.error.message).toContain('max_pending of 5');
    // Nothing was written for a refused request.
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE tenant_id = 'slow'`;
    expect(row?.n).toBe(accepted);
    expect((await post('good', { dedupe_key: 'still-fine', payload: {} })).status).toBe(202);
  }, 30_000);
});
