import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.ts';
import type { Envelope } from '../../src/core/record.ts';
import { SluiceError } from '../../src/errors.ts';
import { AheadWrites } from '../../src/ingest/ahead-writes.ts';
import { OutboxProgress } from '../../src/ingest/outbox-progress.ts';
import { RecentKeys } from '../../src/ingest/recent-keys.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { quietLog } from '../support/postgres.ts';
import { nodeJournalLines } from '../support/journal-files.ts';
import { eventually } from '../support/sluice.ts';

const event = (key: string): Envelope => ({ tenant_id: 't', dedupe_key: key, topic: 'x', request_id: 'r', headers: {}, payload: JSON.stringify({ key }) });

/** The promise's outcome so far, without waiting for it. */
function watch<T>(p: Promise<T>): { settled: () => boolean; result: Promise<T | unknown> } {
  let settled = false;
  const result = p.then(
    (v) => {
      settled = true;
      return v;
    },
    (err: unknown) => {
      settled = true;
      return err;
    },
  );
  return { settled: () => settled, result };
}

describe('fast_ack write path under a forwarder backlog', () => {
  let dir: string;
  let journal: JournalWriter;
  let progress: OutboxProgress;
  const clock = new ManualClock();
  let path: AheadWrites;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-wp-'));
    journal = await JournalWriter.open({ dir, nodeId: 'n', segmentBytes: 1 << 20, log: quietLog, metrics: createMetrics() });
    progress = new OutboxProgress(journal);
    path = new AheadWrites({
      answer: 'journaled',
      nodeId: 'n',
      journal,
      progress,
      recentKeys: new RecentKeys(100, 'n'),
      maxUnforwarded: 1_000,
      log: quietLog,
      clock,
    });
  });

  afterAll(async () => {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const keys = () =>
    nodeJournalLines(join(dir, 'n')).map((l) => (JSON.parse(l) as { dedupe_key: string }).dedupe_key);

  test('past SLUICE_MAX_UNFORWARDED a write waits 2 s for the forwarder, then gets backlog_full; nothing is journaled', async () => {
    expect((await path.write([event('a')]))[0]?.durability).toBe('journal');
    const filler = Array.from({ length: 998 }, (_, i) => event(`f${i}`));
    await path.write(filler);
    expect(progress.unforwarded).toBe(999);

    const refused = watch(path.write([event('b'), event('c')]));
    await clock.advance(1_999);
    expect(refused.settled()).toBe(false);
    await clock.advance(1);
    const err = await refused.result;
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('backlog_full');
    expect((err as SluiceError).retryAfter).toBe(1);
    expect((err as SluiceError).message).toContain('SLUICE_MAX_UNFORWARDED=1000');
    expect(keys()).toEqual(['a', ...filler.map((e) => e.dedupe_key)]);

    // The forwarder catches up while a write waits: it goes through, before its wait is over.
    const waiting = watch(path.write([event('b'), event('c')]));
    await clock.advance(1_000);
    expect(waiting.settled()).toBe(false);
    progress.forwardedThrough(999);
    const results = (await waiting.result) as { duplicate: boolean }[];
    expect(results.map((r) => r.duplicate)).toEqual([false, false]);
    expect(keys().slice(-2)).toEqual(['b', 'c']);
    expect(keys().length).toBe(1_001);
  });
});

describe('fast_ack write path: the room under SLUICE_MAX_UNFORWARDED', () => {
  let dir: string;
  let journal: JournalWriter;
  const clock = new ManualClock();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-wp-room-'));
    journal = await JournalWriter.open({ dir, nodeId: 'n', segmentBytes: 1 << 22, log: quietLog, metrics: createMetrics() });
  });

  afterAll(async () => {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A forwarder's progress that has forwarded every line the journal holds so far. */
  const caughtUp = (): OutboxProgress => {
    const progress = new OutboxProgress(journal);
    progress.forwardedThrough(journal.nextSeq - 1);
    return progress;
  };
  const open = (progress: OutboxProgress, forwarderFailing?: () => boolean): AheadWrites =>
    new AheadWrites({ answer: 'journaled', nodeId: 'n', journal, progress, recentKeys: new RecentKeys(100, 'n'), maxUnforwarded: 1_000, forwarderFailing, log: quietLog, clock });
  const batch = (prefix: string, n: number): Envelope[] => Array.from({ length: n }, (_, i) => event(`${prefix}-${i}`));

  test('regression (outside test of issue 11, round 21): writes waiting for room take only the room there is, not each the whole of it', async () => {
    const progress = caughtUp();
    const path = open(progress);
    await path.write(batch('fill', 1_000));
    expect(progress.unforwarded).toBe(1_000);
    // Ten requests of 100 wait; the forwarder then makes room for 500 at once. Before, every one of
    // them woke to the same room and all ten went in: 1,500 waiting at a limit of 1,000.
    const waiting = Array.from({ length: 10 }, (_, i) => watch(path.write(batch(`wait${i}`, 100))));
    progress.forwardedThrough(journal.nextSeq - 1 - 500);
    await eventually(async () => waiting.filter((w) => w.settled()).length >= 5, 10_000, 'five waiting writes journaled');
    expect(progress.unforwarded + path.inFlight).toBeLessThanOrEqual(1_000);
    expect(waiting.filter((w) => w.settled()).length).toBe(5);
    await clock.advance(2_000);
    const outcomes = await Promise.all(waiting.map((w) => w.result));
    expect(outcomes.filter((o) => o instanceof SluiceError && o.code === 'backlog_full').length).toBe(5);
    expect(progress.unforwarded).toBeLessThanOrEqual(1_000);
  });

  test('past the limit while the forwarder is failing, a write is refused at once rather than after the 2 s wait', async () => {
    const progress = caughtUp();
    let failing = false;
    const path = open(progress, () => failing);
    await path.write(batch('full', 1_000));
    const waits = watch(path.write(batch('late', 1)));
    await Bun.sleep(20);
    expect(waits.settled()).toBe(false);
    await clock.advance(2_000);
    expect(((await waits.result) as SluiceError).message).not.toContain('forwarder');
    failing = true;
    const refused = watch(path.write(batch('later', 1)));
    await Bun.sleep(20);
    expect(refused.settled()).toBe(true);
    const err = (await refused.result) as SluiceError;
    expect(err.code).toBe('backlog_full');
    expect(err.retryAfter).toBe(1);
    expect(err.message).toBe('1000 journaled records are waiting for the outbox (limit SLUICE_MAX_UNFORWARDED=1000), and the forwarder is failing to insert them; retry shortly');

    // One already waiting when the forwarder starts failing is refused at its next look, not at 2 s.
    failing = false;
    const waiter = watch(path.write(batch('waiter', 1)));
    await Bun.sleep(20);
    failing = true;
    await clock.advance(100);
    await eventually(async () => waiter.settled(), 5_000, 'the waiting write refused');
    expect(((await waiter.result) as SluiceError).message).toContain('the forwarder is failing');
  });

  test('regression (outside test of issue 11, round 21): a request of more new events than SLUICE_MAX_UNFORWARDED is refused at once as too large, not told to retry', async () => {
    const path = open(caughtUp());
    const started = Date.now();
    const err = (await path.write(batch('huge', 1_001)).catch((e: unknown) => e)) as SluiceError;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(err.code).toBe('payload_too_large');
    expect(err.message).toBe('the request has 1001 new events, more than SLUICE_MAX_UNFORWARDED=1000 can ever hold');
    expect(err.details?.[0]?.message).toBe('send at most 1000 events a request');
    // The whole limit in one request still fits an empty backlog.
    expect((await path.write(batch('whole', 1_000))).length).toBe(1_000);
  });
});

describe('fast_ack and background answers, one request at a time and overlapping', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function open(answer: 'journaled' | 'queued') {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-wp-'));
    dirs.push(dir);
    const journal = await JournalWriter.open({ dir, nodeId: 'n', segmentBytes: 1 << 20, log: quietLog, metrics: createMetrics() });
    const recentKeys = new RecentKeys(100, 'n');
    const path = new AheadWrites({ answer, nodeId: 'n', journal, progress: new OutboxProgress(journal), recentKeys, maxUnforwarded: 1_000, log: quietLog, clock: new ManualClock() });
    return { journal, recentKeys, path };
  }

  test('fast_ack: a key repeated in its own request and by an overlapping one gets the first write\'s id; fresh keys their own, in order', async () => {
    const { journal, path } = await open('journaled');
    const [first, second] = await Promise.all([path.write([event('a'), event('b'), event('a')]), path.write([event('a'), event('c')])]);
    expect(first).toEqual([
      { id: 'n:1', tenant_id: 't', dedupe_key: 'a', duplicate: false, durability: 'journal' },
      { id: 'n:2', tenant_id: 't', dedupe_key: 'b', duplicate: false, durability: 'journal' },
      { id: 'n:1', tenant_id: 't', dedupe_key: 'a', duplicate: true, durability: 'journal' },
    ]);
    expect(second).toEqual([
      { id: 'n:1', tenant_id: 't', dedupe_key: 'a', duplicate: true, durability: 'journal' },
      { id: 'n:3', tenant_id: 't', dedupe_key: 'c', duplicate: false, durability: 'journal' },
    ]);
    expect(path.inFlight).toBe(0);
    // Answered from the index once journaled.
    expect(await path.write([event('b')])).toEqual([{ id: 'n:2', tenant_id: 't', dedupe_key: 'b', duplicate: true, durability: 'journal' }]);
    await journal.close();
  });

  test('fast_ack: writes a closed journal refuses are refused, and their keys are free again', async () => {
    const { journal, recentKeys, path } = await open('journaled');
    const closing = journal.close();
    const refused = await Promise.all([path.write([event('x')]), path.write([event('x')])].map((p) => p.catch((err: unknown) => err)));
    await closing;
    for (const err of refused) expect((err as SluiceError).code).toBe('shutting_down');
    expect(recentKeys.has('t', 'x')).toBe(false);
    expect(path.inFlight).toBe(0);
  });

  test('background: answered at once without ids, journaled behind; a repeat meanwhile is a duplicate', async () => {
    const { journal, recentKeys, path } = await open('queued');
    const results = await path.write([event('a'), event('a')]);
    expect(results).toEqual([
      { id: null, tenant_id: 't', dedupe_key: 'a', duplicate: false, durability: 'memory' },
      { id: null, tenant_id: 't', dedupe_key: 'a', duplicate: true, durability: 'memory' },
    ]);
    await path.drain();
    expect(path.inFlight).toBe(0);
    expect(recentKeys.has('t', 'a')).toBe(true);
    expect(journal.nextSeq).toBe(2);
    await journal.close();
  });
});
