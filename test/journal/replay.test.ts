import { afterAll, beforeAll, beforeEach, describe, expect, setSystemTime, test } from 'bun:test';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { readSegmentLines } from '../../src/journal/reader.ts';
import { formatSeconds, progressFigures, progressLine } from '../../src/journal/replay-progress.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { runCli, summaryField, type CliResult } from '../support/cli.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';

let db: TestDatabase;
let root: string;
let journalDir: string;
let midpoint: string;

function sluice(args: string[]): Promise<CliResult> {
  return runCli(args, { DATABASE_URL: db.url, SLUICE_LOG_LEVEL: 'warn' });
}

const field = summaryField;

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
  // The writer stamps each line with the wall clock: held still, the first 30 lines are journaled
  // before the midpoint and the last 30 after it, whatever the machine's speed.
  const start = Date.now();
  midpoint = new Date(start + 1).toISOString();
  try {
    for (let i = 1; i <= 60; i++) {
      setSystemTime(start + (i <= 30 ? 0 : 2));
      await w.append([{ tenant_id: i % 2 === 0 ? 'even' : 'odd', dedupe_key: `k${i}`, topic: 't', request_id: 'r', headers: {}, payload: JSON.stringify({ i }) }]);
    }
  } finally {
    setSystemTime();
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

describe('sluice replay of damaged files', () => {
  test('regression (issue 9): a truncated .jsonl.gz replays every line it could read, and says the file is unreadable', async () => {
    const dir = join(root, 'truncated', 'n1');
    Bun.spawnSync(['mkdir', '-p', dir]);
    const text = Array.from({ length: 400 }, (_, i) =>
      JSON.stringify({ seq: i + 1, ts: '2026-11-25T00:00:00.000Z', tenant_id: 'x', dedupe_key: `t${i + 1}`, topic: 't', request_id: 'r', headers: {}, payload: { i, pad: `${i}`.repeat(40) } }),
    ).join('\n');
    const gz = gzipSync(`${text}\n`);
    writeFileSync(join(dir, '00000000000000000001.jsonl.gz'), gz.subarray(0, Math.floor(gz.length * 0.6)));
    const res = await sluice(['replay', join(root, 'truncated')]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/unreadable\s+.*00000000000000000001\.jsonl\.gz/);
    const lines = field(res.stdout, 'lines');
    expect(lines).toBeGreaterThan(0);
    expect(field(res.stdout, 'inserted')).toBe(lines);
    const keys = (await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`).map((r) => r.dedupe_key);
    expect(keys).toEqual(Array.from({ length: lines }, (_, i) => `t${i + 1}`));
  }, 30_000);
});

describe('sluice replay of poison lines', () => {
  test('regression (issue 10): a line the outbox refuses is a bad line of the summary; the good lines around it are replayed', async () => {
    const dir = join(root, 'poison', 'n1');
    Bun.spawnSync(['mkdir', '-p', dir]);
    const line = (seq: number, over: Record<string, unknown> = {}) =>
      JSON.stringify({ seq, ts: '2026-11-25T00:00:00.000Z', tenant_id: 'p', dedupe_key: `p${seq}`, topic: 't', request_id: 'r', headers: {}, payload: {}, ...over });
    const file = join(dir, '00000000000000000001.jsonl');
    writeFileSync(file, [line(1), line(2, { dedupe_key: 'bad\u0000key' }), line(3), line(4, { headers: { h: 'x\u0000' } }), line(5), ''].join('\n'));
    const res = await sluice(['replay', join(root, 'poison')]);
    expect(res.code).toBe(1);
    expect(field(res.stdout, 'inserted')).toBe(3);
    expect(field(res.stdout, 'bad lines')).toBe(2);
    expect(res.stdout).toContain(`${file}:2: refused by the outbox: PostgresError 22021`);
    expect(res.stdout).toContain(`${file}:4: refused by the outbox`);
    const keys = (await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`).map((r) => r.dedupe_key);
    expect(keys).toEqual(['p1', 'p3', 'p5']);
  }, 30_000);
});

describe('sluice replay, as a person recovering from a disaster runs it', () => {
  test('a directory argument means its journal files; progress on stderr with rate and time left; a summary', async () => {
    const res = await sluice(['replay', journalDir]);
    expect(res.code).toBe(0);
    expect(field(res.stdout, 'inserted')).toBe(60);
    expect(res.stdout).toMatch(/elapsed\s+\d+ s \(\d+ lines\/s\)/);
    // Not a terminal: progress comes as JSON lines, the last one at 100%.
    const lines = res.stderr.split('\n').filter((l) => l.includes('"replay progress"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toMatchObject({ level: 'info', percent: 100, lines: 60, inserted: 60, eta_s: 0 });
    expect(typeof lines.at(-1)?.lines_per_s).toBe('number');
    // One node's directory works too.
    const node = await sluice(['replay', join(journalDir, 'n1'), '--dry-run']);
    expect(field(node.stdout, 'duplicates')).toBe(60);
  }, 30_000);

  test('nothing matched is an error, not a quiet success', async () => {
    const none = await sluice(['replay', join(root, 'no-such-dir', '*.jsonl')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no journal files matched');
    const filtered = await sluice(['replay', journalDir, '--tenant', 'nobody']);
    expect(filtered.code).toBe(1);
    expect(filtered.stderr).toContain('no record matched the filter');
    expect(await outboxCount()).toBe(0);
  }, 30_000);

  test('--dry-run against a database never migrated creates nothing and counts duplicates across the whole run', async () => {
    const empty = await createTestDatabase({ migrate: false });
    const twice = join(root, 'twice');
    try {
      // The same journal twice (two copies of a node's directory): every pair is met twice, in batches far apart.
      Bun.spawnSync(['mkdir', '-p', twice]);
      Bun.spawnSync(['cp', '-r', join(journalDir, 'n1'), join(twice, 'a')]);
      Bun.spawnSync(['cp', '-r', join(journalDir, 'n1'), join(twice, 'b')]);
      const { code, stdout } = await runCli(['replay', twice, '--dry-run'], { DATABASE_URL: empty.url, SLUICE_LOG_LEVEL: 'warn' });
      expect(code).toBe(0);
      expect(field(stdout, 'lines')).toBe(120);
      expect(field(stdout, 'would insert')).toBe(60);
      expect(field(stdout, 'duplicates')).toBe(60);
      const [tables] = await empty.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`;
      expect(tables?.n).toBe(0);
    } finally {
      await empty.drop();
      rmSync(twice, { recursive: true, force: true });
    }
  }, 30_000);

  test('--help prints the usage and exits 0; wrong arguments exit 2 with it', async () => {
    const help = await sluice(['replay', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: sluice replay <dir|glob>...');
    const wrong = await sluice(['replay', '--nope', journalDir]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('usage: sluice replay');
  });
});

describe('replay progress figures', () => {
  test('percent, rate and time left come from the bytes read so far', () => {
    const p = { file: 'f', filesDone: 1, files: 4, bytesDone: 250, bytes: 1_000, lines: 5_000, inserted: 0, duplicates: 0, elapsedMs: 2_000 };
    expect(progressFigures(p)).toEqual({ percent: 25, linesPerSecond: 2_500, etaSeconds: 6 });
    expect(progressFigures({ ...p, bytesDone: 0, elapsedMs: 0 }).etaSeconds).toBeUndefined();
    expect(progressLine(p)).toBe('replay: 25.0% (file 1/4), 5000 lines, 0 inserted, 0 duplicates, 2500 lines/s, ~6 s left');
    expect(formatSeconds(3_725)).toBe('1 h 2 min');
  });
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

  test('a crashed node\'s preallocated newest segment (its lines, then zeros) verifies ok and reads as its lines; NUL bytes in a sealed segment are reported', async () => {
    const line = (seq: number) => `${JSON.stringify({ seq, ts: '2026-11-25T00:00:00.000Z', tenant_id: 'x', dedupe_key: `z${seq}`, topic: 't', request_id: 'r', headers: {}, payload: {} })}\n`;
    const crashed = join(root, 'crashed', 'n1');
    Bun.spawnSync(['mkdir', '-p', crashed]);
    writeFileSync(join(crashed, '00000000000000000001.jsonl'), line(1) + line(2));
    const newest = join(crashed, '00000000000000000003.jsonl');
    writeFileSync(newest, Buffer.concat([Buffer.from(line(3) + line(4)), Buffer.alloc(1 << 16)]));
    const ok = await sluice(['journal', 'verify', join(root, 'crashed')]);
    expect(ok.stdout).toContain('4 records, seq 1..4');
    expect(ok.stdout.trim().split('\n').at(-1)).toBe('journal ok');
    expect(ok.code).toBe(0);
    let zerosAt: number | undefined;
    const read: number[] = [];
    for await (const l of readSegmentLines(newest, { gzipped: false, onZeros: (at) => (zerosAt = at) })) read.push((JSON.parse(l.text) as { seq: number }).seq);
    expect(read).toEqual([3, 4]);
    expect(zerosAt).toBe(Buffer.byteLength(line(3) + line(4)));
    // The same zeros in a segment another follows: the writer cuts a segment to its lines when it seals it, so this is damage.
    writeFileSync(join(crashed, '00000000000000000005.jsonl'), line(5));
    const bad = await sluice(['journal', 'verify', join(root, 'crashed')]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`NUL bytes from byte ${zerosAt} on: the rest of this sealed segment is not read`);
  });
});
