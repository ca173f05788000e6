import { basename, dirname, resolve } from 'node:path';
import fg from 'fast-glob';
import type { Sql } from '../outbox/db.ts';
import { existingPairs, insertRows, rowFor } from '../outbox/repository.ts';
import type { JournalEntry } from './entry.ts';
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
  lines: number;
  inserted: number;
  duplicates: number;
}

export interface ReplaySummary {
  files: number;
  lines: number;
  inserted: number;
  duplicates: number;
  skipped: number;
  badLines: BadLine[];
  unreadable: { file: string; reason: string }[];
  dryRun: boolean;
}

export interface ReplayOptions {
  patterns: string[];
  filter: ReplayFilter;
  dryRun: boolean;
  sql: Sql;
  partitions: number;
  batchSize: number;
  onProgress?: (p: ReplayProgress) => void;
}

/** Journal files matched by the globs, plain and gzipped, in seq order per directory. */
export async function selectJournalFiles(patterns: string[]): Promise<string[]> {
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
 * so running it twice inserts nothing the second time. A dry run inserts nothing and counts what
 * would be inserted and what is already there.
 */
export async function replayJournal(opts: ReplayOptions): Promise<ReplaySummary> {
  const files = await selectJournalFiles(opts.patterns.map((p) => (p.startsWith('/') ? p : resolve(p))));
  const summary: ReplaySummary = { files: files.length, lines: 0, inserted: 0, duplicates: 0, skipped: 0, badLines: [], unreadable: [], dryRun: opts.dryRun };
  let batch: JournalEntry[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const rows = batch.map((e) => rowFor(e, opts.partitions));
    batch = [];
    if (opts.dryRun) {
      const existing = await existingPairs(opts.sql, rows);
      const seen = new Set<string>();
      for (const r of rows) {
        const k = `${r.tenant_id}\u0000${r.dedupe_key}`;
        if (existing.has(k) || seen.has(k)) summary.duplicates++;
        else summary.inserted++;
        seen.add(k);
      }
      return;
    }
    const results = await insertRows(opts.sql, rows);
    for (const r of results) {
      if (r.duplicate) summary.duplicates++;
      else summary.inserted++;
    }
  };
  for (const [i, file] of files.entries()) {
    try {
      for await (const l of readSegmentLines(file, { gzipped: file.endsWith('.gz') })) {
        summary.lines++;
        const e = parseEntry(l.text);
        if (typeof e === 'string') {
          summary.badLines.push({ file, line: l.line, reason: e });
          continue;
        }
        if (!matches(e, opts.filter)) {
          summary.skipped++;
          continue;
        }
        batch.push(e);
        if (batch.length >= opts.batchSize) {
          await flush();
          opts.onProgress?.({ file, filesDone: i, files: files.length, lines: summary.lines, inserted: summary.inserted, duplicates: summary.duplicates });
        }
      }
      await flush();
    } catch (err) {
      batch = [];
      if (isDatabaseError(err)) throw err;
      summary.unreadable.push({ file, reason: (err as Error).message });
    }
    opts.onProgress?.({ file, filesDone: i + 1, files: files.length, lines: summary.lines, inserted: summary.inserted, duplicates: summary.duplicates });
  }
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

/** postgres.js errors carry a SQLSTATE or a connection code; those stop the replay instead of skipping a file. */
function isDatabaseError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const name = err.name;
  return name === 'PostgresError' || (err as { code?: unknown }).code === 'ECONNREFUSED' || (err as { code?: unknown }).code === 'CONNECTION_CLOSED';
}
