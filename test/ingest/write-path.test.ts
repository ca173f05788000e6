import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Envelope } from '../../src/core/record.ts';
import { SluiceError } from '../../src/errors.ts';
import { RecentKeys } from '../../src/ingest/recent-keys.ts';
import { WritePath } from '../../src/ingest/write-path.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';

const event = (key: string): Envelope => ({ tenant_id: 't', dedupe_key: key, topic: 'x', request_id: 'r', headers: {}, payload: JSON.stringify({ key }) });

describe('fast_ack write path under a forwarder backlog', () => {
  let db: TestDatabase;
  let dir: string;
  let journal: JournalWriter;
  let unforwarded = 0;
  let path: WritePath;

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-wp-'));
    journal = await JournalWriter.open({ dir, nodeId: 'n', segmentBytes: 1 << 20, log: quietLog, metrics: createMetrics() });
    path = new WritePath({
      mode: 'fast_ack',
      nodeId: 'n',
      journal,
      sql: db.sql,
      partitions: 16,
      maxBatch: 1000,
      recentKeys: new RecentKeys(100, 'n'),
      log: quietLog,
      unforwarded: () => unforwarded,
      maxUnforwarded: 1_000,
      forwardedThrough: () => 0,
      outboxWaitMs: 2_000,
    });
  });

  afterAll(async () => {
    await journal.close();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const lines = () =>
    readdirSync(join(dir, 'n'))
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => readFileSync(join(dir, 'n', f), 'utf8').split('\n').filter((l) => l.length > 0));

  test('past SLUICE_MAX_UNFORWARDED a write waits for the forwarder, then gets backlog_full; nothing is journaled', async () => {
    expect((await path.write([event('a')]))[0]?.durability).toBe('journal');
    unforwarded = 999;
    const started = performance.now();
    const refused = await path.write([event('b'), event('c')]).catch((err: unknown) => err);
    expect(performance.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(refused).toBeInstanceOf(SluiceError);
    expect((refused as SluiceError).code).toBe('backlog_full');
    expect((refused as SluiceError).retryAfter).toBe(1);
    expect((refused as SluiceError).message).toContain('SLUICE_MAX_UNFORWARDED=1000');
    expect(lines().map((l) => (JSON.parse(l) as { dedupe_key: string }).dedupe_key)).toEqual(['a']);
    // The forwarder catches up while a write waits: it goes through.
    const waiting = path.write([event('b')]);
    await Bun.sleep(100);
    unforwarded = 0;
    expect((await waiting)[0]?.duplicate).toBe(false);
    expect(lines().length).toBe(2);
  }, 10_000);
});
