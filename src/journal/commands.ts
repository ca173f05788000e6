import { parseArgs } from 'node:util';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { openChecked } from '../outbox/open-checked.ts';
import { migrate } from '../outbox/migrate.ts';
import { replayJournal, type ReplayFilter, type ReplayProgress } from './replay.ts';
import { verifyJournal } from './verify.ts';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** `sluice replay <globs...> [--tenant T] [--since ISO] [--until ISO] [--dry-run]` */
export async function runReplay(argv: string[], config: Config, log: Logger): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    });
  } catch (err) {
    process.stderr.write(`replay: ${(err as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (positionals.length === 0) {
    process.stderr.write('usage: sluice replay <globs...> [--tenant T] [--since ISO] [--until ISO] [--dry-run]\n');
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
  const db = await openChecked(config, log);
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  const progress = (p: ReplayProgress): void => {
    const now = Date.now();
    if (!tty || now - lastDraw < 200) return;
    lastDraw = now;
    process.stderr.write(`\r\x1b[Kreplay: file ${p.filesDone}/${p.files}, ${p.lines} lines, ${p.inserted} inserted, ${p.duplicates} duplicates`);
  };
  try {
    await migrate(db.sql, log);
    const s = await replayJournal({
      patterns: positionals,
      filter,
      dryRun: values['dry-run'] === true,
      sql: db.sql,
      partitions: config.partitions,
      batchSize: 500,
      onProgress: progress,
    });
    if (tty) process.stderr.write('\r\x1b[K');
    out(`replay summary${s.dryRun ? ' (dry run: nothing written)' : ''}`);
    out(`  files       ${s.files}${s.unreadable.length > 0 ? ` (${s.unreadable.length} unreadable)` : ''}`);
    out(`  lines       ${s.lines}`);
    out(`  ${s.dryRun ? 'would insert' : 'inserted   '} ${s.inserted}`);
    out(`  duplicates  ${s.duplicates}`);
    out(`  skipped     ${s.skipped} (by filter)`);
    out(`  bad lines   ${s.badLines.length}`);
    for (const b of s.badLines) out(`    ${b.file}:${b.line}: ${b.reason}`);
    for (const u of s.unreadable) out(`  unreadable  ${u.file}: ${u.reason}`);
    if (s.files === 0) process.stderr.write('replay: no journal files matched\n');
    return s.unreadable.length > 0 ? 1 : 0;
  } finally {
    await db.close();
  }
}

/** `sluice journal verify <dir>` */
export async function runJournalVerify(argv: string[]): Promise<number> {
  const [dir] = argv;
  if (dir === undefined || argv.length > 1) {
    process.stderr.write('usage: sluice journal verify <dir>\n');
    return 2;
  }
  const report = await verifyJournal(dir);
  for (const n of report.nodes) {
    out(`${n.dir}: ${n.segments} segments, ${n.records} records, seq ${n.firstSeq ?? '-'}..${n.lastSeq ?? '-'}`);
  }
  for (const p of report.problems) out(`${p.file}${p.line !== undefined ? `:${p.line}` : ''}: ${p.message}`);
  out(report.problems.length === 0 ? 'journal ok' : `journal damaged: ${report.problems.length} problem(s)`);
  return report.problems.length === 0 ? 0 : 1;
}
