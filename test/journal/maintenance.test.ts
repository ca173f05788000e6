import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Envelope } from '../../src/core/record.ts';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { compressSegment, tidySegments } from '../../src/journal/segments.ts';
import { writeCheckpoint } from '../../src/journal/checkpoint.ts';
import { verifyJournal } from '../../src/journal/verify.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics, type Metrics } from '../../src/metrics.ts';
import { quietLog } from '../support/postgres.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-maint-'));
  dirs.push(d);
  return d;
}

const envelope = (i: number): Envelope => ({ tenant_id: 't', dedupe_key: `k${i}`, topic: 'x', request_id: 'r', headers: {}, payload: JSON.stringify({ i }) });

async function setup(opts: { segmentBytes?: number; retentionMs?: number; retentionBytes?: number; forwarded?: () => number } = {}) {
  const dir = tempDir();
  const metrics: Metrics = createMetrics();
  const writer = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: opts.segmentBytes ?? 1 << 20, log: quietLog, metrics });
  const maintenance = new JournalMaintenance({
    writer,
    maxSegmentAgeMs: 60_000,
    retentionMs: opts.retentionMs ?? 3_600_000,
    retentionBytes: opts.retentionBytes ?? 1 << 30,
    intervalMs: 60_000,
    forwardedThrough: opts.forwarded ?? (() => 0),
    log: quietLog,
    metrics,
  });
  return { dir, nodeDir: join(dir, 'n1'), writer, maintenance, metrics };
}

async function zcat(path: string): Promise<string> {
  const proc = Bun.spawn({ cmd: ['zcat', path], stdout: 'pipe', stderr: 'pipe' });
  const [text, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  return text;
}

describe('journal maintenance', () => {
  test('rotates by age and gzips the closed segment; zcat reads it and every line parses', async () => {
    const { nodeDir, writer, maintenance } = await setup();
    await writer.append([envelope(1), envelope(2), envelope(3)]);
    await maintenance.runOnce(Date.now() + 30_000);
    expect(readdirSync(nodeDir).filter((f) => f.includes('.jsonl'))).toEqual(['00000000000000000001.jsonl']);
    await maintenance.runOnce(Date.now() + 61_000);
    await writer.append([envelope(4)]);
    await maintenance.runOnce();
    expect(readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort()).toEqual([
      '00000000000000000001.jsonl.gz',
      '00000000000000000004.jsonl',
    ]);
    const lines = (await zcat(join(nodeDir, '00000000000000000001.jsonl.gz'))).trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([1, 2, 3]);
    await writer.close();
  });

  test('regression (CI, under load): the pass that rotates a segment by age waits for its seal and gzips it in the same pass', async () => {
    const { nodeDir, writer, maintenance } = await setup();
    await writer.append([envelope(1), envelope(2), envelope(3)]);
    // Sealing trims and syncs the segment; a pass that did not wait for it saw it unsealed and left it.
    await maintenance.runOnce(Date.now() + 61_000);
    expect(readdirSync(nodeDir).filter((f) => f.includes('.jsonl'))).toEqual(['00000000000000000001.jsonl.gz']);
    await writer.close();
  });

  test('closed segments from size rotation are gzipped, bytes kept exactly', async () => {
    const { nodeDir, writer, maintenance, metrics } = await setup({ segmentBytes: 4096 });
    for (let i = 0; i < 100; i++) await writer.append([envelope(i)]);
    const plainBefore = readdirSync(nodeDir).filter((f) => f.endsWith('.jsonl')).sort();
    const originals = new Map(await Promise.all(plainBefore.slice(0, -1).map(async (f) => [f, await readFile(join(nodeDir, f), 'utf8')] as const)));
    await maintenance.runOnce();
    const after = readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort();
    expect(after.filter((f) => f.endsWith('.jsonl'))).toEqual([plainBefore.at(-1) ?? '']);
    for (const [f, text] of originals) expect(await zcat(join(nodeDir, `${f}.gz`))).toBe(text);
    expect((await metrics.journalCompressed.get()).values[0]?.value).toBe(originals.size);
    await writer.close();
  });

  test('a crash mid-compression leaves one whole copy: temp files and a plain twin are tidied away', async () => {
    const { nodeDir, writer } = await setup();
    await writer.append([envelope(1)]);
    await writer.close();
    const plain = join(nodeDir, '00000000000000000001.jsonl');
    const text = await readFile(plain, 'utf8');
    // Crash after the rename, before removing the original: both exist.
    writeFileSync(`${plain}.gz`, gzipSync(text));
    // Crash while writing another segment's temp file.
    writeFileSync(join(nodeDir, '00000000000000000009.jsonl.gz.tmp'), 'partial');
    const tidied = await tidySegments(nodeDir);
    expect(tidied).toEqual({ removedTemp: ['00000000000000000009.jsonl.gz.tmp'], removedPlain: ['00000000000000000001.jsonl'] });
    expect(readdirSync(nodeDir).sort()).toEqual(['00000000000000000001.jsonl.gz']);
    expect(await zcat(`${plain}.gz`)).toBe(text);
    // And a clean compression of a plain segment leaves only the .gz.
    writeFileSync(join(nodeDir, '00000000000000000002.jsonl'), text.replace('{"seq":1,', '{"seq":2,'));
    expect(await compressSegment(nodeDir, 2, 2)).toMatchObject({ ok: true });
    expect(readdirSync(nodeDir).sort()).toEqual(['00000000000000000001.jsonl.gz', '00000000000000000002.jsonl.gz']);
  });

  test('compression refuses a copy that does not hold the seq range it should, and keeps the plain segment', async () => {
    const { nodeDir, writer } = await setup();
    await writer.append([envelope(1), envelope(2), envelope(3)]);
    await writer.close();
    const plain = join(nodeDir, '00000000000000000001.jsonl');
    // Seqs 1..3 were written, but the writer knows seq 4 went into it too: the file lost a line.
    expect(await compressSegment(nodeDir, 1, 4)).toMatchObject({ ok: false, reason: 'it ends at seq 3, but seqs through 4 were written to it' });
    expect(readdirSync(nodeDir).sort()).toEqual(['00000000000000000001.jsonl']);
    // A hole in the middle.
    const lines = (await readFile(plain, 'utf8')).split('\n');
    writeFileSync(plain, [lines[0], lines[2], ''].join('\n'));
    expect(await compressSegment(nodeDir, 1)).toMatchObject({ ok: false, reason: 'seq 3 follows 1 at line 2' });
    // A file whose first seq is not its name.
    writeFileSync(plain, [lines[1], lines[2], ''].join('\n'));
    expect(await compressSegment(nodeDir, 1)).toMatchObject({ ok: false, reason: 'its first seq is 2, not 1 as its name says' });
    expect(readdirSync(nodeDir).sort()).toEqual(['00000000000000000001.jsonl']);
    // A corrupt line is not a hole: the segment is compressed with it, verbatim.
    writeFileSync(plain, [lines[0], '{broken', lines[2], ''].join('\n'));
    expect(await compressSegment(nodeDir, 1, 3)).toMatchObject({ ok: true });
    expect(await zcat(`${plain}.gz`)).toBe([lines[0], '{broken', lines[2], ''].join('\n'));
  });

  test('retention deletes old forwarded segments only; an unforwarded one survives past its age', async () => {
    let forwarded = 0;
    const { nodeDir, writer, maintenance, metrics } = await setup({ segmentBytes: 4096, retentionMs: 1_000, forwarded: () => forwarded });
    for (let i = 0; i < 100; i++) await writer.append([envelope(i)]);
    await maintenance.runOnce();
    const segs = readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort();
    expect(segs.length).toBeGreaterThan(3);
    const firstSeqs = segs.map((f) => Number(f.slice(0, 20)));
    // The forwarder has passed the first two segments only.
    forwarded = (firstSeqs[2] ?? 0) - 1;
    await maintenance.runOnce(Date.now() + 10_000);
    const left = readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort();
    expect(left).toEqual(segs.slice(2));
    expect((await metrics.journalRetentionDeletedSegments.get()).values[0]?.value).toBe(2);
    expect((await metrics.journalRetentionDeletedRecords.get()).values[0]?.value).toBe((firstSeqs[2] ?? 0) - 1);
    await writer.close();
  });

  test('byte retention deletes oldest forwarded segments first and never unforwarded ones', async () => {
    let forwarded = 0;
    const { nodeDir, writer, maintenance } = await setup({ segmentBytes: 4096, retentionBytes: 1, forwarded: () => forwarded });
    for (let i = 0; i < 60; i++) await writer.append([envelope(i)]);
    await maintenance.runOnce();
    const before = readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort();
    await maintenance.runOnce();
    expect(readdirSync(nodeDir).filter((f) => f.includes('.jsonl')).sort()).toEqual(before);
    forwarded = writer.nextSeq - 1;
    await maintenance.runOnce();
    // Everything forwarded and over the byte limit: only the active segment remains.
    expect(readdirSync(nodeDir).filter((f) => f.includes('.jsonl'))).toEqual([before.at(-1) ?? '']);
    await writer.close();
  });

  test('regression (issue 9): a journal whose every segment was forwarded and retired restarts clean, seqs going on', async () => {
    const { dir, nodeDir, writer, maintenance } = await setup({ retentionMs: 0, forwarded: () => 10 });
    for (let i = 1; i <= 10; i++) await writer.append([envelope(i)]);
    await writeCheckpoint(nodeDir, { segment: 1, offset: 10_000, line: 11, seq: 10 });
    // Sealed by age, gzipped, then deleted by retention: only the checkpoint is left.
    await maintenance.runOnce(Date.now() + 61_000);
    await maintenance.runOnce(Date.now() + 61_000);
    await writer.close();
    expect(readdirSync(nodeDir)).toEqual(['checkpoint.json']);
    const reopened = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 1 << 20, log: quietLog, metrics: createMetrics() });
    expect(reopened.integrity.incidents).toBe(0);
    expect((await reopened.append([envelope(11)])).map((e) => e.seq)).toEqual([11]);
    await reopened.close();
    const report = await verifyJournal(dir);
    expect(report.problems).toEqual([]);
  });

  test('a damaged gzipped newest segment does not stop the start: an incident, and new seqs after what it holds', async () => {
    const dir = tempDir();
    const nodeDir = join(dir, 'n1');
    Bun.spawnSync(['mkdir', '-p', nodeDir]);
    const text = Array.from({ length: 200 }, (_, i) => `${JSON.stringify({ seq: i + 1, ts: 't', tenant_id: 't', dedupe_key: `k${i + 1}`, topic: 'x', request_id: 'r', headers: {}, payload: { pad: 'p'.repeat(60) } })}\n`).join('');
    const gz = gzipSync(text);
    writeFileSync(join(nodeDir, '00000000000000000001.jsonl.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
    const errors: Record<string, unknown>[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => errors.push({ msg, ...fields }) };
    const writer = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 1 << 20, log, metrics: createMetrics() });
    expect(errors).toEqual([expect.objectContaining({ kind: 'unreadable_segment', file: join(nodeDir, '00000000000000000001.jsonl.gz') })]);
    const readable = errors[0]?.after as number;
    expect(readable).toBeGreaterThan(1);
    expect(readable).toBeLessThan(200);
    const [e] = await writer.append([envelope(1)]);
    expect(e?.seq).toBe(readable + 1);
    await writer.close();
    expect(readdirSync(nodeDir).sort()).toEqual(['00000000000000000001.jsonl.gz', `${String(readable + 1).padStart(20, '0')}.jsonl`]);
  });
});
