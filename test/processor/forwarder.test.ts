import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Envelope } from '../../src/envelope.ts';
import { formatEntry } from '../../src/journal/entry.ts';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics, type Metrics } from '../../src/metrics.ts';
import { Forwarder } from '../../src/processor/forwarder.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

let db: TestDatabase;
let dir: string;
let metrics: Metrics;
const open: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-fwd-'));
  metrics = createMetrics();
  await db.sql`TRUNCATE outbox`;
});
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

const envelope = (i: number, tenant = 'acme'): Envelope => ({
  tenant_id: tenant,
  dedupe_key: `k${i}`,
  topic: 'events',
  request_id: `r${i}`,
  headers: { n: String(i) },
  payload: JSON.stringify({ i }),
});

async function writer(segmentBytes = 1 << 20): Promise<JournalWriter> {
  const w = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes, log: quietLog, metrics });
  open.push(w);
  return w;
}

async function forwarder(w: JournalWriter, batchSize = 100): Promise<Forwarder> {
  const f = new Forwarder({
    nodeDir: w.nodeDir,
    sql: db.sql,
    partitions: 16,
    batchSize,
    pollMs: 10,
    log: quietLog,
    metrics,
    active: () => w.active,
    committed: () => ({ from: 1, through: 0 }), settledThrough: () => Number.MAX_SAFE_INTEGER,
  });
  await f.init();
  f.start();
  open.push({ close: () => f.stop() });
  return f;
}

async function outboxKeys(): Promise<string[]> {
  return (await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`).map((r) => r.dedupe_key);
}

const keys = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `k${from + i}`);

describe('forwarder', () => {
  test('tails the journal across rotation and gzip into the outbox, in seq order, and checkpoints', async () => {
    const w = await writer(4096);
    const maintenance = new JournalMaintenance({
      writer: w, maxSegmentAgeMs: 3_600_000, retentionMs: 3_600_000, retentionBytes: 1 << 30, intervalMs: 60_000,
      forwardedThrough: () => 0, log: quietLog, metrics,
    });
    for (let i = 1; i <= 150; i++) await w.append([envelope(i)]);
    await maintenance.runOnce();
    const f = await forwarder(w, 40);
    await eventually(async () => (await outboxKeys()).length === 150, 10_000, '150 rows');
    expect(await outboxKeys()).toEqual(keys(1, 150));
    const [row] = await db.sql`SELECT topic, payload_text AS payload, headers, request_id FROM outbox WHERE dedupe_key = 'k7'`;
    expect(row).toEqual({ topic: 'events', payload: '{"i":7}', headers: { n: '7' }, request_id: 'r7' });
    // Writes after the forwarder caught up are forwarded too.
    for (let i = 151; i <= 160; i++) await w.append([envelope(i)]);
    await eventually(async () => (await outboxKeys()).length === 160, 10_000, '160 rows');
    await eventually(async () => f.checkpoint.seq === 160, 5_000, 'checkpoint at 160');
    const cp = JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number; segment: number };
    expect(cp.seq).toBe(160);
    expect(cp.segment).toBe(w.active?.firstSeq ?? -1);
  });

  test('resumes from its checkpoint after a restart without inserting anything twice', async () => {
    const w = await writer();
    for (let i = 1; i <= 20; i++) await w.append([envelope(i)]);
    const f1 = await forwarder(w);
    await eventually(async () => f1.checkpoint.seq === 20, 10_000, 'first pass');
    await f1.stop();
    for (let i = 21; i <= 30; i++) await w.append([envelope(i)]);
    const f2 = await forwarder(w);
    await eventually(async () => f2.checkpoint.seq === 30, 10_000, 'second pass');
    const dup = (await metrics.forwardedRecords.get()).values.find((v) => v.labels.result === 'duplicate')?.value ?? 0;
    expect(dup).toBe(0);
    expect(await outboxKeys()).toEqual(keys(1, 30));
  });

  test('a corrupt line in the middle is reported with file and line, left in place, and skipped', async () => {
    const w = await writer();
    await w.append([envelope(1), envelope(2)]);
    await w.close();
    const segment = join(dir, 'n1', '00000000000000000001.jsonl');
    appendFileSync(segment, `this is not json\n${formatEntry({ ...envelope(3), seq: 3, ts: new Date().toISOString() })}`);
    const w2 = await writer();
    await w2.append([envelope(4)]);
    const lines: string[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => lines.push(JSON.stringify({ msg, ...fields })) };
    const f = new Forwarder({
      nodeDir: w2.nodeDir, sql: db.sql, partitions: 16, batchSize: 100, pollMs: 10, log, metrics,
      active: () => w2.active, committed: () => ({ from: 1, through: 0 }), settledThrough: () => Number.MAX_SAFE_INTEGER,
    });
    await f.init();
    f.start();
    open.push({ close: () => f.stop() });
    await eventually(async () => f.checkpoint.seq === 4, 10_000, 'forwarded past the bad line');
    expect(await outboxKeys()).toEqual(['k1', 'k2', 'k3', 'k4']);
    expect(lines).toEqual([expect.stringContaining(`"file":"${segment}","line":3`)]);
    expect(readFileSync(segment, 'utf8')).toContain('this is not json\n');
    expect((await metrics.journalBadLines.get()).values[0]?.value).toBe(1);
  });
});
