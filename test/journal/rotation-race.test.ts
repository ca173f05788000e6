import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Envelope } from '../../src/core/record.ts';
import { JournalMaintenance } from '../../src/journal/maintenance.ts';
import { parseEntry, readSegmentLines } from '../../src/journal/reader.ts';
import { listSegments } from '../../src/journal/segments.ts';
import { verifyJournal } from '../../src/journal/verify.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { quietLog } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Regression (issue 9): with small segments and steady load, maintenance gzipped and unlinked the
 * segment the writer had just opened, and the writer went on appending to the unlinked file: acked
 * writes in no file. Here many rotations (by size and by age) race gzip and retention passes under
 * concurrent appends; afterwards every acknowledged seq must be read back from the files, in order.
 */
describe('journal rotation racing maintenance', () => {
  test('every acknowledged seq is in the files, in order, without a gap', async () => {
    const random = prng(testSeed('rotation race'));
    const dir = mkdtempSync(join(tmpdir(), 'sluice-race-'));
    dirs.push(dir);
    const metrics = createMetrics();
    const writer = await JournalWriter.open({
      dir,
      nodeId: 'n1',
      segmentBytes: 1_500,
      log: quietLog,
      metrics,
    });
    const maintenance = new JournalMaintenance({
      writer,
      maxSegmentAgeMs: 3,
      retentionMs: 0,
      retentionBytes: 0,
      intervalMs: 1,
      // Nothing is forwarded, so retention must keep every segment however hard it is pushed.
      forwardedThrough: () => 0,
      log: quietLog,
      metrics,
    });
    maintenance.start();

    const acked = new Map<number, string>();
    let next = 0;
    const total = 4_000;
    const client = async (): Promise<void> => {
      while (next < total) {
        const batch: Envelope[] = [];
        for (let n = 1 + Math.floor(random() * 4); n > 0 && next < total; n--) {
          const i = next++;
          batch.push({ tenant_id: 't', dedupe_key: `k${i}`, topic: 'x', request_id: 'r', headers: {}, payload: JSON.stringify({ i, pad: 'p'.repeat(Math.floor(random() * 300)) }) });
        }
        for (const e of await writer.append(batch)) acked.set(e.seq, e.dedupe_key);
        if (random() < 0.3) await Bun.sleep(random() * 2);
      }
    };
    await Promise.all(Array.from({ length: 32 }, client));
    // Gzipped while the appends went on: what makes this a race (counted before the last pass).
    const compressedUnderLoad = (await metrics.journalCompressed.get()).values[0]?.value ?? 0;
    await maintenance.stop();
    await writer.close();

    const read: { seq: number; key: string }[] = [];
    const segments = await listSegments(writer.nodeDir);
    for (const seg of segments) {
      for await (const l of readSegmentLines(seg.path, { gzipped: seg.gzipped })) {
        const e = parseEntry(l.text);
        if (typeof e === 'string') throw new Error(`${seg.path}:${l.line}: ${e}`);
        read.push({ seq: e.seq, key: e.dedupe_key });
      }
    }
    expect(acked.size).toBe(total);
    expect(read.length).toBe(total);
    expect(read.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    for (const r of read) expect(acked.get(r.seq)).toBe(r.key);
    // The race was really run: many segments, many of them gzipped while appends went on.
    expect(segments.length).toBeGreaterThan(50);
    expect(compressedUnderLoad).toBeGreaterThan(20);
    expect(writer.integrity.incidents).toBe(0);
    expect((await verifyJournal(dir)).problems).toEqual([]);
  });
});
