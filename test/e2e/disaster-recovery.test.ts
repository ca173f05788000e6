import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Admin } from '@platformatic/kafka';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/log.ts';
import { runCli, summaryField, type CliResult } from '../support/cli.ts';
import { readTopic, testBrokers, type ConsumedRecord } from '../support/kafka.ts';
import { createTopic } from '../support/outbox-load.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually, postEvent, startSluice, type TestSluice } from '../support/sluice.ts';

/**
 * The README's disaster-recovery runbook, step by step, with the real CLI, Postgres and broker: a lost
 * database, a lost node, a lost Kafka topic. Each scenario checks what the runbook promises in Kafka.
 */
const ADMIN_TOKEN = 'disaster-recovery-admin-token';

let brokers: string[];
let root: string;
const databases: TestDatabase[] = [];
const running: TestSluice[] = [];

beforeAll(async () => {
  brokers = await testBrokers();
  root = mkdtempSync(join(tmpdir(), 'sluice-dr-'));
}, 120_000);

afterAll(async () => {
  for (const s of running.splice(0)) await s.stop().catch(() => {});
  for (const d of databases.splice(0)) await d.drop().catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrate: false });
  databases.push(db);
  return db;
}

function cli(args: string[], db: TestDatabase): Promise<CliResult> {
  return runCli(args, { DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn' });
}

interface Deployment {
  prefix: string;
  topic: string;
  journalDir: string;
}

async function deployment(): Promise<Deployment> {
  const d = { prefix: `dr-${Bun.randomUUIDv7()}`, topic: `dr.${Bun.randomUUIDv7()}`, journalDir: join(root, Bun.randomUUIDv7()) };
  await createTopic(brokers, d.topic);
  return d;
}

async function start(d: Deployment, db: TestDatabase, env: Record<string, string> = {}, log = createLogger({ level: 'error', write: () => {} })): Promise<TestSluice> {
  const s = await startSluice(
    {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_TRANSACTIONAL_ID_PREFIX: d.prefix,
      SLUICE_KAFKA_TOPIC: d.topic,
      SLUICE_JOURNAL_DIR: d.journalDir,
      SLUICE_NODE_ID: 'node-a',
      SLUICE_ADMIN_TOKEN: ADMIN_TOKEN,
      ...env,
    },
    { log },
  );
  running.push(s);
  return s;
}

async function stop(s: TestSluice): Promise<void> {
  running.splice(running.indexOf(s), 1);
  await s.stop();
}

async function write(s: TestSluice, keys: string[]): Promise<void> {
  for (const key of keys) {
    const res = await postEvent(s.url, { dedupe_key: key, payload: { key } }, { 'X-Tenant-Id': 'acme' });
    expect(res.status).toBe(202);
  }
}

async function allSent(db: TestDatabase, n: number): Promise<void> {
  await eventually(async () => {
    const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
    return r?.n === n;
  }, 30_000, `${n} rows sent`);
}

const keysOf = (records: ConsumedRecord[]): string[] => records.map((r) => r.key).sort();
const range = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `k${String(from + i).padStart(2, '0')}`);

describe('disaster recovery runbook', () => {
  test('lost database: dry run, migrate, replay the journal, restart; every row of the new outbox is published', async () => {
    const d = await deployment();
    const lost = await database();
    const before = await start(d, lost);
    await write(before, range(1, 10));
    await allSent(lost, 10);
    await stop(before);
    await lost.drop();
    databases.splice(databases.indexOf(lost), 1);

    // 1. A new, empty database. 2. A dry run changes nothing, not even the schema.
    const rebuilt = await database();
    const dry = await cli(['replay', d.journalDir, '--dry-run'], rebuilt);
    expect(dry.code).toBe(0);
    expect(summaryField(dry.stdout, 'would insert')).toBe(10);
    const [tables] = await rebuilt.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`;
    expect(tables?.n).toBe(0);
    // 3. Migrate and replay (twice: the second run changes nothing).
    expect((await cli(['migrate'], rebuilt)).code).toBe(0);
    const replay = await cli(['replay', d.journalDir], rebuilt);
    expect([replay.code, summaryField(replay.stdout, 'inserted')]).toEqual([0, 10]);
    const again = await cli(['replay', d.journalDir], rebuilt);
    expect([again.code, summaryField(again.stdout, 'inserted'), summaryField(again.stdout, 'duplicates')]).toEqual([0, 0, 10]);

    // 4. Start on the new database with the same prefix and journal. The old outbox's progress record
    // names the same ids 1..10: it must be ignored, so every row is published by the new outbox.
    const warnings: string[] = [];
    const log = createLogger({ level: 'warn', write: (line) => warnings.push(line) });
    const after = await start(d, rebuilt, {}, log);
    await allSent(rebuilt, 10);
    await write(after, ['k11']);
    await allSent(rebuilt, 11);
    const records = await readTopic(brokers, d.topic, { expected: 21 });
    // Published once by each outbox (the runbook says so: consumers dedupe by key), then k11 once.
    expect(keysOf(records)).toEqual([...range(1, 10), ...range(1, 10), 'k11'].map((k) => `acme:${k}`).sort());
    expect(warnings.some((l) => l.includes('progress record of another outbox ignored'))).toBe(true);
    await stop(after);
  }, 120_000);

  test('lost node: a new journal directory on the same database; repeats are still duplicates, new writes flow', async () => {
    const d = await deployment();
    const db = await database();
    const before = await start(d, db);
    await write(before, range(1, 5));
    await allSent(db, 5);
    await stop(before);
    rmSync(d.journalDir, { recursive: true, force: true });

    const after = await start({ ...d, journalDir: join(root, Bun.randomUUIDv7()) }, db, { SLUICE_NODE_ID: 'node-b' });
    const repeat = await postEvent(after.url, { dedupe_key: 'k03', payload: { key: 'k03' } }, { 'X-Tenant-Id': 'acme' });
    expect([repeat.status, (await repeat.json()) as unknown]).toEqual([200, expect.objectContaining({ duplicate: true, dedupe_key: 'k03' })]);
    await write(after, ['k06']);
    await allSent(db, 6);
    const records = await readTopic(brokers, d.topic, { expected: 6 });
    expect(keysOf(records)).toEqual(range(1, 6).map((k) => `acme:${k}`));
    await stop(after);
  }, 120_000);

  test('lost Kafka topic: recreate it, re-queue each tenant through the admin API; every record is back', async () => {
    const d = await deployment();
    const db = await database();
    const s = await start(d, db);
    await write(s, range(1, 5));
    await allSent(db, 5);
    const admin = new Admin({ clientId: 'dr-admin', bootstrapBrokers: brokers });
    try {
      await admin.deleteTopics({ topics: [d.topic] });
      await eventually(async () => (await admin.listTopics()).every((t) => t !== d.topic), 30_000, 'topic deleted');
    } finally {
      await admin.close();
    }
    await createTopic(brokers, d.topic);
    const res = await fetch(`${s.url}/admin/outbox/replay/tenant`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ tenant_id: 'acme', status: ['sent'] }),
    });
    expect([res.status, await res.json()]).toEqual([200, { matched: 5, requeued: 5 }]);
    await allSent(db, 5);
    const records = await readTopic(brokers, d.topic, { expected: 5 });
    expect(keysOf(records)).toEqual(range(1, 5).map((k) => `acme:${k}`));
    expect(records.every((r) => r.headers.replay === 'true')).toBe(true);
    await stop(s);
  }, 120_000);

  test('a journal that lost acknowledged records: /readyz is 503 naming the hole, the metric counts it', async () => {
    const d = await deployment();
    const db = await database();
    const before = await start(d, db, { SLUICE_WRITE_MODE: 'fast_ack' });
    await write(before, range(1, 6));
    await allSent(db, 6);
    await stop(before);
    // The disk lost the last three fsynced lines, which the forwarder had passed.
    const segment = join(d.journalDir, 'node-a', '00000000000000000001.jsonl');
    const lines = (await Bun.file(segment).text()).split('\n');
    await Bun.write(segment, `${lines.slice(0, 3).join('\n')}\n`);

    const after = await start(d, db, { SLUICE_WRITE_MODE: 'fast_ack' });
    const ready = await fetch(`${after.url}/readyz`);
    const body = (await ready.json()) as { components: Record<string, { ok: boolean; required: boolean; detail?: string }> };
    expect(ready.status).toBe(503);
    expect(body.components.journal_integrity).toEqual({
      ok: false,
      required: true,
      detail: expect.stringContaining('checkpoint_ahead') as unknown as string,
    });
    expect(body.components.journal_integrity?.detail).toContain('records 4..6 are in no file');
    const metrics = await (await fetch(`${after.url}/metrics`)).text();
    expect(metrics).toContain('sluice_journal_integrity_incidents_total{kind="checkpoint_ahead"} 1');
    expect(metrics).toContain('sluice_journal_integrity_incidents_total{kind="gap"} 0');
    // Writes still work (the node is out of rotation, not broken); seqs go on above the checkpoint.
    const res = await postEvent(after.url, { dedupe_key: 'k07', payload: {} }, { 'X-Tenant-Id': 'acme' });
    expect([res.status, ((await res.json()) as { id: string }).id]).toEqual([202, 'node-a:7']);
    await allSent(db, 7);
    await stop(after);
  }, 120_000);

  test('regression (issue 9): a process with another SLUICE_PARTITIONS than the outbox is refused, not left unpublished', async () => {
    const d = await deployment();
    const db = await database();
    const s = await start(d, db, { SLUICE_PARTITIONS: '4' });
    await write(s, range(1, 3));
    await allSent(db, 3);
    await stop(s);
    // Replay (or serve) with the default 16 partitions: refused with the fix, nothing written.
    const replay = await runCli(['replay', d.journalDir], { DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn' });
    expect(replay.code).toBe(2);
    expect(replay.stderr).toContain('SLUICE_PARTITIONS is 16, but this outbox places its rows in 4 partitions');
    await expect(start(d, db)).rejects.toThrow('run every sluice of this outbox (serve, ingest, process, replay) with SLUICE_PARTITIONS=4');
    const ok = await runCli(['replay', d.journalDir], { DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn', SLUICE_PARTITIONS: '4' });
    expect([ok.code, summaryField(ok.stdout, 'duplicates')]).toEqual([0, 3]);
  }, 120_000);
});
