import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { openChecked } from '../outbox/open-checked.ts';
import { Outbox } from '../outbox/outbox.ts';
import { migrate } from '../outbox/migrate.ts';
import { replayJournal, selectJournalFiles, type ReplayFilter, type ReplayProgress, type ReplaySummary } from './replay.ts';
import { formatSeconds, progressFields, progressLine } from './replay-progress.ts';
import { verifyJournal } from './verify.ts';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const REPLAY_USAGE = 'usage: sluice replay <dir|glob>... [--tenant T] [--since ISO] [--until ISO] [--dry-run] (sluice replay --help)';

/** How often a progress line is written when stderr is not a terminal. */
const PROGRESS_LOG_MS = 5_000;

/** `sluice replay <dirs or globs...> [--tenant T] [--since ISO] [--until ISO] [--dry-run]` */
export async function runReplay(argv: string[], config: Config, log: Logger): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    process.stderr.write(`replay: ${(err as Error).message}\n\n${REPLAY_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    out(REPLAY_USAGE);
    return 0;
  }
  if (positionals.length === 0) {
    process.stderr.write(`${REPLAY_USAGE}\n`);
    return 2;
  }
  const filter: ReplayFilter = {};
  if (values.tenant !== undefined) filter.tenant = values.tenant;
  for (const name of ['since', 'until'] as const) {
    const raw = values[name];
    if (raw === undefined) continue;
    const date = new Date(raw);
    if (Number.isNaN(date.getTime())) {
      process.stderr.write(`replay: --${name} ${raw} is not an ISO 8601 time\n`);
      return 2;
    }
    filter[name] = date;
  }
  const dryRun = values['dry-run'] === true;
  // Before the database: nothing to replay must not open (or even create) one first.
  if ((await selectJournalFiles(positionals)).length === 0) {
    process.stderr.write(`replay: no journal files matched ${positionals.join(' ')}\n`);
    return 1;
  }
  const db = await openChecked(config, log);
  const outbox = new Outbox(db.sql, config.partitions);
  // Say where the rows go: without DATABASE_URL that is the embedded database, easy to replay into by mistake.
  process.stderr.write(
    db.kind === 'embedded'
      ? `replay: into the embedded database in ${config.db.dataDir} (DATABASE_URL is not set)\n`
      : `replay: into the Postgres database of DATABASE_URL\n`,
  );
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  const progress = (p: ReplayProgress): void => {
    const now = Date.now();
    const done = p.filesDone === p.files;
    if (now - lastDraw < (tty ? 200 : PROGRESS_LOG_MS) && !done) return;
    lastDraw = now;
    if (tty) process.stderr.write(`\r\x1b[K${progressLine(p)}`);
    else process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), level: 'info', msg: 'replay progress', ...progressFields(p) })}\n`);
  };
  try {
    // A dry run changes nothing, not even the schema of a database being rebuilt.
    if (!dryRun) {
      await migrate(db.sql, log);
      await outbox.claim();
    }
    const s = await replayJournal({ patterns: positionals, filter, dryRun, outbox, batchSize: 500, onProgress: progress });
    if (tty) process.stderr.write('\n');
    printSummary(s);
    if (s.files === 0) {
      process.stderr.write(`replay: no journal files matched ${positionals.join(' ')}\n`);
      return 1;
    }
    if (s.inserted + s.duplicates === 0) {
      process.stderr.write('replay: no record matched the filter\n');
      return 1;
    }
    return s.unreadable.length + s.badLines.length + s.gaps.length > 0 ? 1 : 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`replay: ${err.message}\n`);
    return 2;
  } finally {
    await db.close();
  }
}

function printSummary(s: ReplaySummary): void {
  const seconds = s.elapsedMs / 1000;
  out(`replay summary${s.dryRun ? ' (dry run: nothing written)' : ''}`);
  out(`  files       ${s.files}${s.unreadable.length > 0 ? ` (${s.unreadable.length} unreadable)` : ''}`);
  out(`  lines       ${s.lines}`);
  out(`  ${s.dryRun ? 'would insert' : 'inserted   '} ${s.inserted}`);
  out(`  duplicates  ${s.duplicates}`);
  out(`  skipped     ${s.skipped} (by filter)`);
  out(`  bad lines   ${s.badLines.length}`);
  for (const b of s.badLines) out(`    ${b.file}:${b.line}: ${b.reason}`);
  out(`  gaps        ${s.gaps.length}`);
  for (const g of s.gaps) out(`    ${g.file}:${g.line}: seq ${g.seq} follows ${g.after} (${g.seq - g.after - 1} missing, or not selected)`);
  for (const u of s.unreadable) out(`  unreadable  ${u.file}: ${u.reason}`);
  out(`  elapsed     ${formatSeconds(seconds)} (${seconds > 0 ? Math.round(s.lines / seconds) : s.lines} lines/s)`);
}

/** `sluice journal verify <dir>` */
export async function runJournalVerify(argv: string[]): Promise<number> {
  const [dir] = argv;
  if (dir === undefined || argv.length > 1) {
    process.stderr.write('usage: sluice journal verify <dir>\n');
    return 2;
  }
  const found = await stat(dir).then((st) => (st.isDirectory() ? undefined : 'not a directory'), (err: NodeJS.ErrnoException) => err.code ?? String(err));
  if (found !== undefined) {
    process.stderr.write(`sluice journal verify: ${dir}: ${found}: point it at a journal directory (SLUICE_JOURNAL_DIR, or one node's directory in it)\n`);
    return 1;
  }
  const report = await verifyJournal(dir);
  for (const n of report.nodes) {
    out(`${n.dir}: ${n.segments} segments, ${n.records} records, seq ${n.firstSeq ?? '-'}..${n.lastSeq ?? '-'}`);
  }
  for (const p of report.problems) out(`${p.file}${p.line !== undefined ? `:${p.line}` : ''}: ${p.message}`);
  out(report.problems.length === 0 ? 'journal ok' : `journal damaged: ${report.problems.length} problem(s)`);
  return report.problems.length === 0 ? 0 : 1;
}
