import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatEntry } from '../../src/journal/entry.ts';
import { JournalIntegrity } from '../../src/journal/integrity.ts';
import { readEntriesAfter, SegmentListing } from '../../src/journal/reader.ts';
import { segmentFileName } from '../../src/journal/segment-name.ts';
import { compressSegment, listSegments } from '../../src/journal/segments.ts';
import { createMetrics } from '../../src/metrics.ts';
import { quietLog } from '../support/postgres.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const SEGMENTS = 150;
const PER_SEGMENT = 4;

/** Sealed segments of PER_SEGMENT entries each, seqs 1..SEGMENTS*PER_SEGMENT, all plain. */
function journalDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-reader-race-'));
  dirs.push(dir);
  for (let s = 0; s < SEGMENTS; s++) {
    const first = s * PER_SEGMENT + 1;
    let text = '';
    for (let seq = first; seq < first + PER_SEGMENT; seq++) {
      text += formatEntry({ seq, ts: '2026-11-28T00:00:00.000Z', tenant_id: 'acme', dedupe_key: `k${seq}`, topic: 't', request_id: 'r', headers: {}, payload: `{"n":${seq}}` });
    }
    writeFileSync(join(dir, segmentFileName(first)), text);
  }
  return dir;
}

/**
 * Regression (issue 11's outside test): the background read that rebuilds the dedupe index listed a
 * plain segment that maintenance then gzipped (rename, unlink) before it was stat'ed or opened, and
 * failed with ENOENT (retried a second later, so new keys waited up to 3.7 s). A reader racing
 * compression must read every entry once, in order, without an error or an integrity incident.
 */
describe('reading the journal while its segments are gzipped', () => {
  test('listSegments and readEntriesAfter never fail on a segment renamed under them', async () => {
    const dir = journalDir();
    const integrity = new JournalIntegrity(quietLog, createMetrics());
    const source = { nodeDir: dir, active: undefined, sealedBelow: Number.MAX_SAFE_INTEGER, integrity };
    let compressing = true;
    const compressor = (async () => {
      for (let s = 0; s < SEGMENTS; s++) {
        const r = await compressSegment(dir, s * PER_SEGMENT + 1, (s + 1) * PER_SEGMENT);
        expect(r.ok).toBe(true);
      }
      compressing = false;
    })();
    let reads = 0;
    const errors: string[] = [];
    while (compressing) {
      try {
        const listed = await listSegments(dir);
        expect(new Set(listed.map((s) => s.firstSeq)).size).toBe(SEGMENTS);
        const seqs: number[] = [];
        await readEntriesAfter(source, { segment: 0, offset: 0, line: 1, seq: 0 }, 0, (e) => seqs.push(e.seq));
        expect(seqs).toEqual(Array.from({ length: SEGMENTS * PER_SEGMENT }, (_, i) => i + 1));
        reads++;
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    await compressor;
    expect(errors).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    expect(integrity.incidents).toBe(0);
  }, 60_000);
});

describe('reading a journal of many segments', () => {
  const all = Array.from({ length: SEGMENTS * PER_SEGMENT }, (_, i) => i + 1);
  const source = (dir: string) => ({ nodeDir: dir, active: undefined, sealedBelow: Number.MAX_SAFE_INTEGER, integrity: new JournalIntegrity(quietLog, createMetrics()) });

  test('regression (outside test, tenth round): the directory is listed once for the whole read, not twice a segment', async () => {
    const dir = journalDir();
    const listing = new SegmentListing(dir);
    const seqs: number[] = [];
    await readEntriesAfter(source(dir), { segment: 0, offset: 0, line: 1, seq: 0 }, 0, (e) => seqs.push(e.seq), listing);
    expect(seqs).toEqual(all);
    // Once, and once more to see that nothing follows the last segment (the writer may have rotated).
    expect(listing.listings).toBe(2);
  });

  test('a segment retention deletes after the listing is passed over: the rest is read, without an error', async () => {
    const dir = journalDir();
    const listing = new SegmentListing(dir);
    await listing.list();
    const deleted = 10 * PER_SEGMENT + 1;
    unlinkSync(join(dir, segmentFileName(deleted)));
    const seqs: number[] = [];
    const journal = source(dir);
    await readEntriesAfter(journal, { segment: 0, offset: 0, line: 1, seq: 0 }, 0, (e) => seqs.push(e.seq), listing);
    expect(seqs).toEqual(all.filter((seq) => seq < deleted || seq >= deleted + PER_SEGMENT));
    expect(journal.integrity.incidents).toBe(0);
  });
});
