import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Envelope } from '../../src/core/record.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { formatEntry } from '../../src/journal/entry.ts';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { verifyJournal } from '../../src/journal/verify.ts';
import { JournalWriter, type DurableBatch } from '../../src/journal/writer.ts';
import { readEntriesAfter, SegmentListing } from '../../src/journal/reader.ts';
import type { Logger } from '../../src/log.ts';
import { createMetrics, type Metrics } from '../../src/metrics.ts';
import { Forwarder, type ForwarderJournal, type ForwarderOptions } from '../../src/ingest/forwarder.ts';
import { HandoffQueue } from '../../src/ingest/handoff-queue.ts';
import { OutboxProgress } from '../../src/ingest/outbox-progress.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';
import { eventually } from '../support/sluice.ts';
import { CountingClock, WatchedClock } from '../support/watched-clock.ts';
import { Watermark } from '../../src/core/watermark.ts';
import { Outbox } from '../../src/outbox/outbox.ts';

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

/** A started forwarder of `w`'s journal (or of `more.journal`, a view of it), stopped after the test. */
async function forwarder(w: JournalWriter, batchSize = 100, log: Logger = quietLog, more: Partial<Pick<ForwarderOptions, 'journal' | 'handoff' | 'clock' | 'checkpointEveryMs' | 'lingerMs' | 'listing'>> = {}): Promise<Forwarder> {
  const f = new Forwarder({ nodeId: 'n1', outbox: new Outbox(db.sql, 16), batchSize, pollMs: 10, log, metrics, progress: new OutboxProgress(w), ...more, journal: more.journal ?? w });
  await f.init();
  f.start();
  open.push({ close: () => f.stop() });
  return f;
}

async function outboxKeys(): Promise<string[]> {
  return (await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY id`).map((r) => r.dedupe_key);
}

/** `clients` appending envelopes 1..total in batches of 1..maxBatch, at random pauses: seq → dedupe key of each acknowledged one. */
async function appendConcurrently(
  w: JournalWriter,
  o: { total: number; clients: number; maxBatch: number; random: () => number; after?: () => void },
): Promise<Map<number, string>> {
  const acked = new Map<number, string>();
  let next = 1;
  const client = async (): Promise<void> => {
    while (next <= o.total) {
      const batch: Envelope[] = [];
      for (let n = 1 + Math.floor(o.random() * o.maxBatch); n > 0 && next <= o.total; n--) batch.push(envelope(next++));
      for (const e of await w.append(batch)) acked.set(e.seq, e.dedupe_key);
      o.after?.();
      if (o.random() < 0.3) await Bun.sleep(o.random() * 3);
    }
  };
  await Promise.all(Array.from({ length: o.clients }, client));
  return acked;
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
    // The file follows within CHECKPOINT_EVERY_MS, and at the latest at stop.
    await f.stop();
    const cp = JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number; segment: number };
    expect(cp.seq).toBe(160);
    expect(cp.segment).toBe(w.active?.firstSeq ?? -1);
  });

  test('a catch-up over hundreds of small segments lists the journal directory a few times, not twice a segment', async () => {
    const w = await writer(4096);
    const total = 3_000;
    for (let i = 1; i <= total; i += 5) await w.append([1, 2, 3, 4, 5].map((k) => envelope(i + k - 1)));
    const segments = readdirSync(w.nodeDir).filter((f) => f.endsWith('.jsonl')).length;
    expect(segments).toBeGreaterThan(100);
    const listing = new SegmentListing(w.nodeDir);
    const f = await forwarder(w, 500, quietLog, { listing });
    await eventually(async () => f.checkpoint.seq === total, 30_000, 'every write forwarded');
    expect(await outboxKeys()).toEqual(keys(1, total));
    expect(f.forwardedFrom.files).toBe(total);
    expect(listing.listings).toBeGreaterThan(0);
    expect(listing.listings).toBeLessThanOrEqual(3);
  }, 60_000);

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
      nodeId: 'n1', journal: w2, outbox: new Outbox(db.sql, 16), batchSize: 100, pollMs: 10, log, metrics,
      progress: new OutboxProgress(w2),
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

  test('regression (issue 9): seqs are never reused after a recovery cut lines the forwarder had passed', async () => {
    const w = await writer();
    for (let i = 1; i <= 5; i++) await w.append([envelope(i)]);
    const f = await forwarder(w);
    await eventually(async () => f.checkpoint.seq === 5, 10_000, 'forwarded 1..5');
    await f.stop();
    await w.close();
    // The disk lost fsynced lines 3..5 (the forwarder had passed them).
    const segment = join(dir, 'n1', '00000000000000000001.jsonl');
    const lines = readFileSync(segment, 'utf8').split('\n');
    writeFileSync(segment, `${lines.slice(0, 2).join('\n')}\n`);
    const before = await verifyJournal(dir);
    expect(before.problems.map((p) => p.message)).toEqual([
      expect.stringContaining('past its end'),
      'the checkpoint passed seq 5 but the journal ends at seq 2',
    ]);

    const errors: Record<string, unknown>[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => errors.push({ msg, ...fields }) };
    const w2 = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 1 << 20, log, metrics });
    open.push(w2);
    expect(w2.nextSeq).toBe(6);
    expect(w2.integrity.incidents).toBe(1);
    expect(errors).toEqual([expect.objectContaining({ msg: 'journal integrity incident', kind: 'checkpoint_ahead', after: 2, seq: 6 })]);
    const acked = await w2.append([envelope(6), envelope(7)]);
    expect(acked.map((e) => e.seq)).toEqual([6, 7]);
    const f2 = await forwarder(w2, 100, log);
    await eventually(async () => f2.checkpoint.seq === 7, 10_000, 'forwarded 6..7');
    // Both new writes reached the outbox; no intact line was called corrupt.
    expect(await outboxKeys()).toEqual(['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']);
    expect((await metrics.journalBadLines.get()).values[0]?.value ?? 0).toBe(0);
    expect(errors.filter((e) => e.msg !== 'journal integrity incident')).toEqual([]);
    // And `journal verify` does not say ok: seqs 3..5 are in no file.
    expect((await verifyJournal(dir)).problems.map((p) => p.message)).toContain('gap: seq 6 follows 2 (3 missing)');
  });

  test('a seq gap met while forwarding is an incident with file, line and seqs; forwarding goes on', async () => {
    const w = await writer();
    await w.append([envelope(1), envelope(2)]);
    await w.close();
    const segment = join(dir, 'n1', '00000000000000000001.jsonl');
    // Seqs 3..4 lost in the middle of a segment (no torn tail: the last line is whole).
    appendFileSync(segment, formatEntry({ ...envelope(5), seq: 5, ts: new Date().toISOString() }));
    const errors: Record<string, unknown>[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => errors.push({ msg, ...fields }) };
    const w2 = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 1 << 20, log, metrics });
    open.push(w2);
    const f = await forwarder(w2, 100, log);
    await eventually(async () => f.checkpoint.seq === 5, 10_000, 'forwarded past the gap');
    expect(await outboxKeys()).toEqual(['k1', 'k2', 'k5']);
    expect(errors).toEqual([
      expect.objectContaining({ msg: 'journal integrity incident', kind: 'gap', file: segment, line: 3, after: 2, seq: 5 }),
    ]);
    const counted = (await metrics.journalIncidents.get()).values.find((v) => v.labels.kind === 'gap');
    expect(counted?.value).toBe(1);
    expect(w2.integrity.describe()).toContain('gap');
  });

  test('rotation, gzip and retention racing the forwarder under concurrent appends: every acked write reaches the outbox once, in seq order', async () => {
    const random = prng(testSeed('forwarder race'));
    const w = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 2_000, log: quietLog, metrics });
    open.push(w);
    // The checkpoint file follows every commit here, so that retention (which follows the file) races the forwarder closely.
    const f = await forwarder(w, 37, quietLog, { checkpointEveryMs: 0 });
    const maintenance = new JournalMaintenance({
      writer: w, maxSegmentAgeMs: 2, retentionMs: 0, retentionBytes: 0, intervalMs: 1,
      forwardedThrough: () => f.checkpointedThrough, log: quietLog, metrics,
    });
    maintenance.start();
    open.push({ close: () => maintenance.stop() });
    const total = 3_000;
    const acked = await appendConcurrently(w, { total, clients: 16, maxBatch: 3, random, after: () => f.wake() });
    await eventually(async () => f.checkpoint.seq === total, 30_000, 'every acknowledged write forwarded');
    expect(acked.size).toBe(total);
    // Each acknowledged write once, in seq order.
    const inSeqOrder = [...acked].sort(([a], [b]) => a - b).map(([, key]) => key);
    expect(await outboxKeys()).toEqual(inSeqOrder);
    expect(w.integrity.incidents).toBe(0);
    // Retention really ran against the forwarder: most forwarded segments are gone.
    expect((await metrics.journalRetentionDeletedSegments.get()).values[0]?.value ?? 0).toBeGreaterThan(10);
  }, 60_000);

  test('a damaged gzipped segment: what it holds before the damage is forwarded, the rest is an incident, forwarding goes on', async () => {
    const errors: Record<string, unknown>[] = [];
    const log = { ...quietLog, error: (msg: string, fields?: Record<string, unknown>) => errors.push({ msg, ...fields }) };
    const w = await JournalWriter.open({ dir, nodeId: 'n1', segmentBytes: 4096, log, metrics });
    open.push(w);
    for (let i = 1; i <= 120; i++) await w.append([envelope(i)]);
    const maintenance = new JournalMaintenance({
      writer: w, maxSegmentAgeMs: 3_600_000, retentionMs: 3_600_000, retentionBytes: 1 << 30, intervalMs: 60_000,
      forwardedThrough: () => 0, log: quietLog, metrics,
    });
    await maintenance.runOnce();
    const nodeDir = join(dir, 'n1');
    const first = join(nodeDir, '00000000000000000001.jsonl.gz');
    const gz = readFileSync(first);
    writeFileSync(first, gz.subarray(0, Math.floor(gz.length / 2)));
    // The start-up scan (fast_ack's dedupe index) reads past it too, instead of failing the start.
    const seen: number[] = [];
    await readEntriesAfter(w, { segment: 0, offset: 0, line: 1, seq: 0 }, 0, (e) => seen.push(e.seq));
    expect(seen.at(-1)).toBe(120);
    const f = await forwarder(w, 100, log);
    await eventually(async () => f.checkpoint.seq === 120, 10_000, 'forwarded past the damaged segment');
    const keys = await outboxKeys();
    const readable = seen.filter((seq) => seq < (seen.find((q, i) => q !== i + 1) ?? 0)).length;
    expect(readable).toBeGreaterThan(0);
    // Every readable record of the damaged segment, then every record of the later segments.
    expect(keys.slice(0, readable)).toEqual(keys.slice(0, readable).map((_, i) => `k${i + 1}`));
    expect(keys.at(-1)).toBe('k120');
    expect(errors).toEqual([
      expect.objectContaining({ msg: 'journal integrity incident', kind: 'unreadable_segment', file: first, after: readable }),
    ]);
    expect(w.integrity.incidents).toBe(1);
  });
});

/** The checkpoint a read of the file would end at: the active segment's size and its line count + 1. */
function fileEnd(w: JournalWriter): { segment: number; offset: number; line: number } {
  const segment = w.active?.firstSeq ?? -1;
  const path = join(w.nodeDir, `${String(segment).padStart(20, '0')}.jsonl`);
  // The written part, as a reader of the file finds it: a preallocated segment's zeros follow it.
  const bytes = readFileSync(path);
  const nul = bytes.indexOf(0);
  const written = nul === -1 ? bytes : bytes.subarray(0, nul);
  return { segment, offset: written.length, line: written.toString('utf8').split('\n').length };
}

async function duplicatesCounted(): Promise<number> {
  return (await metrics.forwardedRecords.get()).values.find((v) => v.labels.result === 'duplicate')?.value ?? 0;
}

describe('forwarder: hand-off in memory', () => {
  test('every durable entry is handed over in memory exactly once, in seq order, across rotation, with the checkpoint a file read gives', async () => {
    const random = prng(testSeed('hand-off in memory'));
    const w = await writer(2_000);
    // Writes begin once the forwarder's first pass found the journal empty (a group fsynced while
    // that pass lists the segments is taken from memory too: the test after this one).
    const started = new CountingClock();
    const f = await forwarder(w, 37, quietLog, { clock: started });
    await eventually(async () => started.begun(10) > 0, 10_000, 'the forwarder idle');
    const total = 2_000;
    const acked = await appendConcurrently(w, { total, clients: 8, maxBatch: 4, random });
    await eventually(async () => f.checkpoint.seq === total, 30_000, 'every acknowledged write forwarded');
    expect([...acked.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(await outboxKeys()).toEqual([...acked].sort(([a], [b]) => a - b).map(([, key]) => key));
    // Not one line was read back from a file, and nothing was inserted twice.
    expect(f.forwardedFrom).toEqual({ memory: total, files: 0 });
    expect(await duplicatesCounted()).toBe(0);
    expect(w.integrity.incidents).toBe(0);
    // The segments did rotate, and the checkpoint on disk is where reading the files would have put it.
    expect(w.active?.firstSeq ?? 0).toBeGreaterThan(1);
    await f.stop();
    const onDisk = JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as unknown;
    expect(onDisk).toEqual({ ...fileEnd(w), seq: total });
    // A forwarder started on that checkpoint finds nothing left to forward.
    // Its first idle wait (pollMs, 10 ms) begins once a pass found nothing to forward.
    const clock = new CountingClock();
    const again = await forwarder(w, 37, quietLog, { clock });
    await eventually(async () => clock.begun(10) > 0, 10_000, 'the second forwarder idle');
    expect(again.forwardedFrom).toEqual({ memory: 0, files: 0 });
    expect(again.checkpoint).toEqual({ ...fileEnd(w), seq: total });
  }, 60_000);

  test.each([
    ['active', 1 << 20, 2],
    ['sealed', 400, 4],
  ])('the first lines, handed over while a pass that found the queue empty lists the segments, are taken from memory (%s segment)', async (_, segmentBytes, total) => {
    const w = await writer(segmentBytes);
    // The writer's hand-over is held back until the forwarder's pass asks whether the segment is
    // sealed (after it listed the segments), and it is woken only when the test says.
    const handoff = new HandoffQueue();
    const durable = new Watermark(w.durable.value);
    let held: DurableBatch[] | undefined = [];
    let armed = false;
    const journal: ForwarderJournal = {
      nodeDir: w.nodeDir,
      integrity: w.integrity,
      durable,
      get active() {
        return w.active;
      },
      get sealedBelow() {
        if (armed && held !== undefined) {
          for (const b of held) handoff.push(b);
          held = undefined;
        }
        return w.sealedBelow;
      },
      handOff: (sink) => w.handOff({ push: (b) => (held === undefined ? sink.push(b) : held.push(b)) }),
    };
    const clock = new WatchedClock();
    const f = await forwarder(w, 100, quietLog, { journal, handoff, clock });
    // The first pass found no segment; it waits on a clock that never moves.
    await eventually(async () => clock.sleeping > 0, 10_000, 'the forwarder idle');
    for (let i = 1; i <= total; i += 2) await w.append([envelope(i), envelope(i + 1)]);
    // 'sealed': the second commit rotated, so the first segment is sealed when the pass looks at it.
    expect(w.active?.firstSeq).toBe(total - 1);
    armed = true;
    durable.advance(w.durable.value);
    await eventually(async () => f.checkpoint.seq === total, 10_000, 'every write forwarded');
    expect(f.forwardedFrom).toEqual({ memory: total, files: 0 });
    expect(await outboxKeys()).toEqual(keys(1, total));
    expect(w.integrity.incidents).toBe(0);
  });

  test('regression (outside test of issue 11, round 21): read from the files, large events go to the outbox in batches of at most ~8 MiB of text, not SLUICE_FORWARD_BATCH of them at once', async () => {
    const w = await writer(64 << 20);
    const handoff = new HandoffQueue({ entries: 10, bytes: 1 << 20 });
    const f = await forwarder(w, 1_000, quietLog, { handoff });
    // 20 events of ~1 MB in one group commit: refused by the queue, read from the file.
    const large = (i: number): Envelope => ({ ...envelope(i), payload: JSON.stringify({ i, pad: 'x'.repeat(1_000_000) }) });
    await w.append(Array.from({ length: 20 }, (_, i) => large(1 + i)));
    expect(handoff.refused).toBe(20);
    await eventually(async () => f.checkpoint.seq === 20, 30_000, 'the large events forwarded');
    expect(await outboxKeys()).toEqual(keys(1, 20));
    // Each insert is a transaction of its own: 9 lines of ~1 MB pass INSERT_BATCH_MAX_CHARS, so 9, 9 and 2.
    const [row] = await db.sql<{ n: number }[]>`SELECT count(DISTINCT xmin::text)::int AS n FROM outbox`;
    expect(row?.n).toBe(3);
  }, 60_000);

  test('past the bound of the queue the forwarder reads the files, loses nothing, and takes from memory again once caught up', async () => {
    const w = await writer(4096);
    const handoff = new HandoffQueue({ entries: 10, bytes: 1 << 20 });
    const f = await forwarder(w, 20, quietLog, { handoff });
    await w.append([1, 2, 3].map((i) => envelope(i)));
    await eventually(async () => f.checkpoint.seq === 3, 10_000, 'first writes forwarded');
    // One group commit larger than the bound: refused by the queue, read from the file.
    await w.append(Array.from({ length: 30 }, (_, i) => envelope(4 + i)));
    expect(handoff.refused).toBe(30);
    await eventually(async () => f.checkpoint.seq === 33, 10_000, 'the refused lines forwarded from the file');
    for (let i = 34; i <= 60; i++) await w.append([envelope(i)]);
    await eventually(async () => f.checkpoint.seq === 60, 10_000, 'later writes forwarded');
    expect(await outboxKeys()).toEqual(keys(1, 60));
    const from = f.forwardedFrom;
    expect(from.files).toBeGreaterThanOrEqual(30);
    expect(from.memory).toBeGreaterThanOrEqual(3);
    expect(from.memory + from.files).toBe(60);
    expect(await duplicatesCounted()).toBe(0);
    expect(handoff.size).toBeLessThanOrEqual(10);
    await f.stop();
    expect(JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8'))).toEqual({ ...fileEnd(w), seq: 60 });
  });

  test('a forwarder that falls behind under a stream of writes fills the queue, reads the rest from the files, and forwards each write once in order', async () => {
    const w = await writer(8192);
    const handoff = new HandoffQueue({ entries: 64, bytes: 4096 });
    const f = await forwarder(w, 16, quietLog, { handoff });
    const total = 1_500;
    // Inserts wait behind a lock while the writes stream in, so the forwarder falls behind however
    // fast this machine is (a faster forwarder kept up, and the queue never filled).
    const holder = await db.sql.reserve();
    try {
      await holder`BEGIN`;
      await holder`LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE`;
      for (let i = 1; i <= total; i += 5) await w.append(Array.from({ length: 5 }, (_, j) => envelope(i + j)));
      await holder`COMMIT`;
    } finally {
      holder.release();
    }
    await eventually(async () => f.checkpoint.seq === total, 30_000, 'every write forwarded');
    expect(handoff.refused).toBeGreaterThan(0);
    expect(f.forwardedFrom.files).toBeGreaterThan(0);
    expect(f.forwardedFrom.memory + f.forwardedFrom.files).toBe(total);
    expect(await outboxKeys()).toEqual(keys(1, total));
    expect(w.integrity.incidents).toBe(0);
  }, 60_000);

  test('behind the queue, the forwarder reads the files only up to the entries held in memory and takes those from there', async () => {
    const w = await writer();
    const handoff = new HandoffQueue({ entries: 10, bytes: 1 << 20 });
    const progress = new OutboxProgress(w);
    const f = new Forwarder({ nodeId: 'n1', journal: w, outbox: new Outbox(db.sql, 16), batchSize: 100, pollMs: 10, log: quietLog, metrics, progress, handoff });
    await f.init();
    f.start();
    open.push({ close: () => f.stop() });
    // As if a sync insert of seq 1 were in flight: the forwarder reads nothing yet.
    progress.inserting(1);
    await w.append(Array.from({ length: 30 }, (_, i) => envelope(1 + i)));
    expect(handoff.refused).toBe(30);
    await w.append(Array.from({ length: 5 }, (_, i) => envelope(31 + i)));
    expect(handoff.size).toBe(5);
    progress.settled(false);
    f.wake();
    await eventually(async () => f.checkpoint.seq === 35, 10_000, 'every write forwarded');
    expect(await outboxKeys()).toEqual(keys(1, 35));
    expect(f.forwardedFrom).toEqual({ memory: 5, files: 30 });
    expect(await duplicatesCounted()).toBe(0);
    await f.stop();
    expect(JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8'))).toEqual({ ...fileEnd(w), seq: 35 });
  });

  test('checkpoint.json lags the outbox by at most checkpointEveryMs, never leads it, and is written at stop', async () => {
    const w = await writer();
    const clock = new ManualClock();
    const f = await forwarder(w, 100, quietLog, { clock, checkpointEveryMs: 1_000 });
    const onDisk = (): number => (JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number }).seq;
    await w.append([envelope(1)]);
    await eventually(async () => f.checkpoint.seq === 1, 10_000, 'first write forwarded');
    // The first commit writes the file at once.
    await eventually(async () => f.checkpointedThrough === 1, 10_000, 'first checkpoint written');
    expect(onDisk()).toBe(1);
    for (let i = 2; i <= 5; i++) await w.append([envelope(i)]);
    await eventually(async () => f.checkpoint.seq === 5, 10_000, 'later writes forwarded');
    expect(await outboxKeys()).toEqual(keys(1, 5));
    // Committed in Postgres, not yet in the file: a restart now would forward 2..5 again.
    expect(onDisk()).toBe(1);
    expect(f.checkpointedThrough).toBe(1);
    await clock.advance(900);
    expect(onDisk()).toBe(1);
    // An idle pass once the interval is over writes it, without another commit.
    await clock.advance(200);
    await eventually(async () => onDisk() === 5, 10_000, 'checkpoint written when due');
    expect(f.checkpointedThrough).toBe(5);
    await w.append([envelope(6)]);
    await eventually(async () => f.checkpoint.seq === 6, 10_000, 'write 6 forwarded');
    expect(onDisk()).toBe(5);
    await f.stop();
    expect(onDisk()).toBe(6);
    expect(JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8'))).toEqual({ ...fileEnd(w), seq: 6 });
  });

  test('while the checkpoint cannot be written forwarding goes on; a restart from the older one inserts nothing twice', async () => {
    const w = await writer();
    const f = await forwarder(w);
    await w.append([envelope(1), envelope(2)]);
    await eventually(async () => f.checkpointedThrough === 2, 10_000, 'first writes forwarded and checkpointed');
    // The checkpoint's temp file cannot be created: each commit inserts, then fails to write the file.
    const blocker = join(w.nodeDir, 'checkpoint.json.tmp');
    mkdirSync(blocker);
    await w.append([envelope(3), envelope(4), envelope(5)]);
    await eventually(async () => (await outboxKeys()).length === 5, 10_000, 'rows inserted');
    await eventually(async () => f.lastError !== undefined, 10_000, 'the checkpoint write failed');
    expect(f.checkpoint.seq).toBe(5);
    expect(f.checkpointedThrough).toBe(2);
    const ids = await db.sql<{ id: string }[]>`SELECT id::text FROM outbox ORDER BY id`;
    await f.stop();
    expect((JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number }).seq).toBe(2);
    rmSync(blocker, { recursive: true });
    // A restart reads 3..5 back from the file and finds each in the outbox.
    const again = await forwarder(w);
    await eventually(async () => again.checkpoint.seq === 5, 15_000, 'restart passed 3..5');
    await again.stop();
    expect(await outboxKeys()).toEqual(keys(1, 5));
    expect(await db.sql<{ id: string }[]>`SELECT id::text FROM outbox ORDER BY id`).toEqual(ids);
    expect(again.forwardedFrom).toEqual({ memory: 0, files: 3 });
    expect(await duplicatesCounted()).toBe(3);
    expect((JSON.parse(readFileSync(join(w.nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number }).seq).toBe(5);
  }, 30_000);
});

describe('forwarder: linger after a small commit (SLUICE_FORWARD_LINGER_MS)', () => {
  const LINGER = 50;
  /** A forwarder on a clock that moves only when told, lingering after forwarding k1. */
  async function lingeringAfterK1(batchSize: number): Promise<{ w: JournalWriter; f: Forwarder; clock: WatchedClock }> {
    const w = await writer();
    const clock = new WatchedClock();
    const f = await forwarder(w, batchSize, quietLog, { clock, lingerMs: LINGER });
    await w.append([envelope(1)]);
    // No clock step: the first commit waits for nothing.
    await eventually(async () => f.checkpoint.seq === 1, 10_000, 'k1 forwarded');
    // The next pass lingers on the clock; writes meanwhile wait for it.
    await eventually(async () => clock.sleeping > 0, 10_000, 'the forwarder lingering');
    return { w, f, clock };
  }
  /** The transaction each key was inserted in: rows of one INSERT share it. */
  async function insertedBy(): Promise<Map<string, string>> {
    const rows = await db.sql<{ k: string; x: string }[]>`SELECT dedupe_key AS k, xmin::text AS x FROM outbox ORDER BY id`;
    return new Map(rows.map((r) => [r.k, r.x]));
  }

  test('a lone write is forwarded at once; the writes of the next linger go in one INSERT; past the linger a write is forwarded at once again', async () => {
    const { w, f, clock } = await lingeringAfterK1(100);
    await w.append([envelope(2)]);
    await w.append([envelope(3)]);
    expect(await outboxKeys()).toEqual(['k1']);
    await clock.advance(LINGER);
    await eventually(async () => f.checkpoint.seq === 3, 10_000, 'k2 and k3 forwarded');
    const by = await insertedBy();
    expect(by.get('k2')).toBe(by.get('k3') ?? 'missing');
    expect(by.get('k2')).not.toBe(by.get('k1'));
    // Long after the last commit, a write goes at once.
    await eventually(async () => clock.sleeping > 0, 10_000, 'the forwarder lingering after k3');
    await clock.advance(LINGER);
    await w.append([envelope(4)]);
    await eventually(async () => f.checkpoint.seq === 4, 10_000, 'k4 forwarded without a clock step');
    expect(await outboxKeys()).toEqual(keys(1, 4));
  });

  test('a catch-up read from the files does not linger after each short segment (outside tester: 4 KiB segments, one INSERT a linger)', async () => {
    const w = await writer(4096);
    for (let i = 1; i <= 400; i += 4) await w.append([0, 1, 2, 3].map((k) => envelope(i + k)));
    // The clock never moves: a linger would hold the catch-up for good.
    const clock = new WatchedClock();
    const f = await forwarder(w, 100, quietLog, { clock, lingerMs: LINGER });
    await eventually(async () => f.checkpoint.seq === 400, 10_000, 'every write forwarded without a clock step');
    expect(f.forwardedFrom.files).toBe(400);
    expect(await outboxKeys()).toEqual(keys(1, 400));
  });

  test('stop during a linger ends it at once; what it waited for stays in the journal for the next start', async () => {
    const { w, f } = await lingeringAfterK1(100);
    await w.append([envelope(2)]);
    // The clock never moves: only the stop can end the linger.
    await f.stop();
    expect(await outboxKeys()).toEqual(['k1']);
    expect(f.checkpoint.seq).toBe(1);
  });

  test("a batch's worth handed over during the linger ends it", async () => {
    const { w, f } = await lingeringAfterK1(3);
    await w.append([envelope(2), envelope(3), envelope(4)]);
    await eventually(async () => f.checkpoint.seq === 4, 10_000, 'k2..k4 forwarded without a clock step');
    const by = await insertedBy();
    expect(new Set([by.get('k2'), by.get('k3'), by.get('k4')]).size).toBe(1);
  });
});
