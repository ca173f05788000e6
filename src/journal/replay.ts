import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import fg from 'fast-glob';
import { KeyIndex, pairHash } from '../ingest/key-index.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { INSERT_BATCH_MAX_CHARS } from '../outbox/repository.ts';
import { SluiceError } from '../errors.ts';
import { pairKey, type JournalEntry } from '../core/record.ts';
import { parseEntry, readSegmentLines, type BadLine } from './reader.ts';
import { parseSegmentFileName } from './segment-name.ts';

export interface ReplayFilter {
  tenant?: string;
  since?: Date;
  until?: Date;
}

export interface ReplayProgress {
  file: string;
  filesDone: number;
  files: number;
  /** Bytes of the selected files read so far (as stored: gzipped ones at their compressed size). */
  bytesDone: number;
  bytes: number;
  lines: number;
  inserted: number;
  duplicates: number;
  elapsedMs: number;
}

/** Where the seqs of one node directory's files do not run on by one: records that are in no file given. */
export interface SeqGap {
  file: string;
  line: number;
  after: number;
  seq: number;
}

export interface ReplaySummary {
  files: number;
  lines: number;
  inserted: number;
  duplicates: number;
  skipped: number;
  badLines: BadLine[];
  gaps: SeqGap[];
  unreadable: { file: string; reason: string }[];
  dryRun: boolean;
  elapsedMs: number;
}

export interface ReplayOptions {
  patterns: string[];
  filter: ReplayFilter;
  dryRun: boolean;
  outbox: Outbox;
  batchSize: number;
  onProgress?: (p: ReplayProgress) => void;
}

/**
 * Journal files named by the arguments, plain and gzipped, in seq order per directory. An argument
 * that is a directory means every journal file below it (a journal root or one node's directory);
 * anything else is a glob.
 */
export async function selectJournalFiles(args: string[]): Promise<string[]> {
  const patterns = await Promise.all(
    args.map(async (arg) => {
      const abs = arg.startsWith('/') ? arg : resolve(arg);
      const isDir = await stat(abs).then((s) => s.isDirectory(), () => false);
      return isDir ? `${fg.escapePath(abs)}/**/*.{jsonl,jsonl.gz}` : abs;
    }),
  );
  const files = await fg(patterns, { absolute: true, onlyFiles: true, unique: true, dot: false });
  const journal = files.filter((f) => f.endsWith('.jsonl') || f.endsWith('.jsonl.gz'));
  const key = (f: string): [string, number, string] => [dirname(f), parseSegmentFileName(basename(f))?.firstSeq ?? Number.MAX_SAFE_INTEGER, f];
  return journal.sort((a, b) => {
    const [da, sa, fa] = key(a);
    const [db, sb, fb] = key(b);
    return da < db ? -1 : da > db ? 1 : sa !== sb ? sa - sb : fa < fb ? -1 : fa > fb ? 1 : 0;
  });
}

/**
 * Replays journal files into the outbox, idempotently: rows are inserted with ON CONFLICT DO NOTHING,
 * so running it twice inserts nothing the second time. A dry run writes nothing (it does not even
 * create the outbox) and counts what would be inserted: a pair already in the outbox, or met earlier
 * in the same run, is a duplicate. Seq gaps within a node directory's files are reported, as the
 * forwarder reports them.
 */
export async function replayJournal(opts: ReplayOptions): Promise<ReplaySummary> {
  const started = performance.now();
  const files = await selectJournalFiles(opts.patterns);
  const sizes = await Promise.all(files.map((f) => stat(f).then((s) => s.size, () => 0)));
  const bytes = sizes.reduce((a, b) => a + b, 0);
  const summary: ReplaySummary = {
    files: files.length, lines: 0, inserted: 0, duplicates: 0, skipped: 0, badLines: [], gaps: [], unreadable: [], dryRun: opts.dryRun, elapsedMs: 0,
  };
  // A dry run against a database that has no outbox yet (a lost one, rebuilt): everything is new.
  const outboxThere = opts.dryRun ? await opts.outbox.exists() : true;
  // The pairs met so far in this run, as the dedupe index holds them (64-bit hashes, 24–48 B a pair).
  const seenInRun = new KeyIndex();
  let met = 0;
  let batch: JournalEntry[] = [];
  let batchChars = 0;
  /** Where each entry of the batch came from, to name a line the outbox refuses. */
  let places: { file: string; line: number }[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const at = places;
    const rows = batch.map((e) => opts.outbox.rowFor(e));
    batch = [];
    batchChars = 0;
    places = [];
    if (opts.dryRun) {
      const existing = outboxThere ? await opts.outbox.existingPairs(rows) : new Set<string>();
      for (const r of rows) {
        const fresh = seenInRun.add(pairHash(r.tenant_id, r.dedupe_key), ++met);
        if (!fresh || existing.has(pairKey(r.tenant_id, r.dedupe_key))) summary.duplicates++;
        else summary.inserted++;
      }
      return;
    }
    // A line the outbox refuses for good (a value Postgres cannot hold) is a bad line of the summary,
    // found by halving the batch, as the forwarder finds it; the rest of the batch is replayed.
    const { results, refused } = await opts.outbox.insertIsolating(rows);
    for (const r of results) {
      if (r.duplicate) summary.duplicates++;
      else summary.inserted++;
    }
    for (const { index, error } of refused) {
      const place = at[index];
      summary.badLines.push({ file: place?.file ?? '?', line: place?.line ?? 0, reason: `refused by the outbox: ${error}` });
    }
  };
  let bytesBefore = 0;
  let lastSeq: { dir: string; seq: number } | undefined;
  for (const [i, file] of files.entries()) {
    let read = 0;
    const progress = (filesDone: number): void =>
      opts.onProgress?.({
        file, filesDone, files: files.length, bytesDone: bytesBefore + read, bytes, lines: summary.lines,
        inserted: summary.inserted, duplicates: summary.duplicates, elapsedMs: performance.now() - started,
      });
    const dir = dirname(file);
    if (lastSeq?.dir !== dir) lastSeq = undefined;
    try {
      for await (const l of readSegmentLines(file, { gzipped: file.endsWith('.gz'), onRead: (n) => (read += n) })) {
        summary.lines++;
        const e = parseEntry(l.text);
        if (typeof e === 'string') {
          summary.badLines.push({ file, line: l.line, reason: e });
          continue;
        }
        if (lastSeq !== undefined && e.seq !== lastSeq.seq + 1) summary.gaps.push({ file, line: l.line, after: lastSeq.seq, seq: e.seq });
        lastSeq = { dir, seq: e.seq };
        if (!matches(e, opts.filter)) {
          summary.skipped++;
          continue;
        }
        batch.push(e);
        places.push({ file, line: l.line });
        batchChars += l.text.length;
        if (batch.length >= opts.batchSize || batchChars >= INSERT_BATCH_MAX_CHARS) {
          await flush();
          progress(i);
        }
      }
      await flush();
    } catch (err) {
      // The outbox failing is no damage of the file: the replay stops instead of skipping it.
      if (err instanceof SluiceError && err.code === 'outbox_unavailable') throw err;
      lastSeq = undefined;
      // What was read before the damage is replayed ("what could be read was replayed").
      await flush();
      summary.unreadable.push({ file, reason: (err as Error).message });
    }
    bytesBefore += sizes[i] ?? 0;
    read = 0;
    progress(i + 1);
  }
  summary.elapsedMs = performance.now() - started;
  return summary;
}

function matches(e: JournalEntry, f: ReplayFilter): boolean {
  if (f.tenant !== undefined && e.tenant_id !== f.tenant) return false;
  if (f.since !== undefined || f.until !== undefined) {
    const ts = Date.parse(e.ts);
    if (f.since !== undefined && !(ts >= f.since.getTime())) return false;
    if (f.until !== undefined && !(ts < f.until.getTime())) return false;
  }
  return true;
}
