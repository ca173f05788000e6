import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
    readdirSync(join(dir, 'n'))
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => readFileSync(join(dir, 'n', f), 'utf8').split('\n').filter((l) => l.length > 0))
      .map((l) => (JSON.parse(l) as { dedupe_key: string }).dedupe_key);

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
