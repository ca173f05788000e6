import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';

const CLI = join(import.meta.dir, '..', '..', 'src', 'cli.ts');
let db: TestDatabase;
let root: string;
let journalDir: string;
let midpoint: string;

async function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn({
    cmd: ['bun', CLI, ...args],
    env: { ...process.env, DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn' },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout, stderr };
}

function field(stdout: string, name: string): number {
  const m = new RegExp(`^\\s+${name}\\s+(\\d+)`, 'm').exec(stdout);
  if (m?.[1] === undefined) throw new Error(`no "${name}" in:\n${stdout}`);
  return Number(m[1]);
}

async function outboxCount(): Promise<number> {
  const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
  return r?.n ?? -1;
}

beforeAll(async () => {
  db = await createTestDatabase();
  root = mkdtempSync(join(tmpdir(), 'sluice-replay-'));
  journalDir = join(root, 'journal');
  const metrics = createMetrics();
  const w = await JournalWriter.open({ dir: journalDir, nodeId: 'n1', segmentBytes: 4096, log: quietLog, metrics });
  for (let i = 1; i <= 60; i++) {
    await w.append([{ tenant_id: i % 2 === 0 ? 'even' : 'odd', dedupe_key: `k${i}`, topic: 't', request_id: 'r', headers: {}, payload: JSON.stringify({ i }) }]);
    if (i === 30) {
      await Bun.sleep(20);
      midpoint = new Date().toISOString();
      await Bun.sleep(20);
    }
  }
  // Gzip every closed segment: the directory then mixes plain and gzipped files.
  await new JournalMaintenance({
    writer: w, maxSegmentAgeMs: 3_600_000, retentionMs: 3_600_000, retentionBytes: 1 << 30, intervalMs: 60_000,
    forwardedThrough: () => 0, log: quietLog, metrics,
  }).runOnce();
  await w.close();
});

afterAll(async () => {
  await db.drop();
  rmSync(root, { recursive: true, force: true });
});

beforeEach(async () => {
  await db.sql`TRUNCATE outbox`;
});

describe('sluice replay', () => {
  test('replays mixed plain and gzipped segments into an empty outbox; the second run inserts nothing', async () => {
    const files = readdirSync(join(journalDir, 'n1'));
    expect(files.some((f) => f.endsWith('.jsonl.gz'))).toBe(true);
    expect(files.some((f) => f.endsWith('.jsonl'))).toBe(true);
    const first = await sluice(['replay', `${journalDir}/**/*.jsonl*`]);
    expect(first.code).toBe(0);
    expect(field(first.stdout, 'lines')).toBe(60);
    expect(field(first.stdout, 'inserted')).toBe(60);
    expect(field(first.stdout, 'duplicates')).toBe(0);
    expect(field(first.stdout, 'bad lines')).toBe(0);
    const keys = (await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`).map((r) => r.dedupe_key);
    expect(keys).toEqual(Array.from({ length: 60 }, (_, i) => `k${i + 1}`));

    const second = await sluice(['replay', `${journalDir}/**/*.jsonl*`]);
    expect(second.code).toBe(0);
    expect(field(second.stdout, 'inserted')).toBe(0);
    expect(field(second.stdout, 'duplicates')).toBe(60);
    expect(await outboxCount()).toBe(60);
  }, 30_000);

  test('--tenant, --since and --until select what is replayed; the rest is counted as skipped', async () => {
    const byTenant = await sluice(['replay', `${journalDir}/**/*`, '--tenant', 'even']);
    expect(field(byTenant.stdout, 'inserted')).toBe(30);
    expect(field(byTenant.stdout, 'skipped')).toBe(30);
    await db.sql`TRUNCATE outbox`;
    const since = await sluice(['replay', `${journalDir}/**/*`, '--since', midpoint]);
    expect(field(since.stdout, 'inserted')).toBe(30);
    const until = await sluice(['replay', `${journalDir}/**/*`, '--until', midpoint]);
    expect(field(until.stdout, 'inserted')).toBe(30);
    expect(await outboxCount()).toBe(60);
  }, 30_000);

  test('--dry-run writes nothing and counts what would be inserted', async () => {
    await sluice(['replay', `${journalDir}/**/*`, '--tenant', 'odd']);
    const dry = await sluice(['replay', `${journalDir}/**/*`, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run');
    expect(field(dry.stdout, 'would insert')).toBe(30);
    expect(field(dry.stdout, 'duplicates')).toBe(30);
    expect(await outboxCount()).toBe(30);
  }, 30_000);

  test('bad lines are listed with file:line; an unreadable file makes the exit code non-zero', async () => {
    const bad = join(root, 'bad');
    const nodeDir = join(bad, 'n9');
    rmSync(bad, { recursive: true, force: true });
    Bun.spawnSync(['mkdir', '-p', nodeDir]);
    const line = (seq: number) => JSON.stringify({ seq, ts: '2026-11-25T00:00:00.000Z', tenant_id: 'x', dedupe_key: `b${seq}`, topic: 't', request_id: 'r', headers: {}, payload: {} });
    writeFileSync(join(nodeDir, '00000000000000000001.jsonl'), `${line(1)}\n{broken\n${line(3)}\n`);
    writeFileSync(join(nodeDir, '00000000000000000004.jsonl.gz'), 'this is not gzip');
    const res = await sluice(['replay', `${bad}/**/*`]);
    expect(res.code).toBe(1);
    expect(field(res.stdout, 'inserted')).toBe(2);
    expect(res.stdout).toContain(`${join(nodeDir, '00000000000000000001.jsonl')}:2: not valid JSON`);
    expect(res.stdout).toMatch(/unreadable\s+.*00000000000000000004\.jsonl\.gz/);

    const verify = await sluice(['journal', 'verify', bad]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain('00000000000000000001.jsonl:2: not valid JSON');
    expect(verify.stdout).toContain('00000000000000000004.jsonl.gz: unreadable');
    expect(verify.stdout).toContain('journal damaged');
  }, 30_000);
});

describe('sluice journal verify', () => {
  test('a healthy journal passes with a per-node summary', async () => {
    const res = await sluice(['journal', 'verify', journalDir]);
    expect(res.stdout).toContain('60 records, seq 1..60');
    expect(res.stdout.trim().split('\n').at(-1)).toBe('journal ok');
    expect(res.code).toBe(0);
  });

  test('a gap in seq and a torn tail are reported', async () => {
    const dir = join(root, 'gappy', 'n1');
    Bun.spawnSync(['mkdir', '-p', dir]);
    const line = (seq: number) => JSON.stringify({ seq, ts: '2026-11-25T00:00:00.000Z', tenant_id: 'x', dedupe_key: `g${seq}`, topic: 't', request_id: 'r', headers: {}, payload: {} });
    writeFileSync(join(dir, '00000000000000000001.jsonl'), `${line(1)}\n${line(2)}\n${line(5)}\n{"seq":6,`);
    const res = await sluice(['journal', 'verify', join(root, 'gappy')]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('00000000000000000001.jsonl:3: gap: seq 5 follows 2 (2 missing)');
    expect(res.stdout).toContain('torn tail: 9 bytes after the last newline');
  });
});
