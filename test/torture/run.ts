// `bun run torture [--minutes N] [--seed S]`: a randomized fault run over real processes (see
// torture.ts). Prints the seed first, so a run can be repeated, and the figures at the end; exits 1
// when any promise was broken.
import { parseArgs } from 'node:util';
import { kafkaTools } from '../../src/config.ts';
import { ensureKafkaJars } from '../../src/kafka/local-broker.ts';
import { freshSeed } from './prng.ts';
import { runTorture } from './torture.ts';

const USAGE = `usage: bun run torture [--minutes N] [--seed S]

A randomized fault run over real processes (serve, ingest, process; a Postgres cluster and a Kafka
broker of its own): N minutes of faults (default 5), seed S (default a fresh one, printed first).
Exit 0 when every promise held, 1 when one broke, 2 for wrong arguments. See README.md#faults-and-the-torture-run.`;

const parsed = (() => {
  try {
    return parseArgs({ options: { minutes: { type: 'string', default: '5' }, seed: { type: 'string' }, help: { type: 'boolean' } } });
  } catch (err) {
    console.error(`torture: ${(err as Error).message}\n\n${USAGE}`);
    return process.exit(2);
  }
})();
if (parsed.values.help === true) {
  console.log(USAGE);
  process.exit(0);
}
const { values } = parsed;
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? freshSeed() : Number(values.seed);
if (!Number.isFinite(minutes) || minutes <= 0 || !Number.isInteger(seed)) {
  console.error(`torture: --minutes must be a positive number and --seed a whole number\n\n${USAGE}`);
  process.exit(2);
}
const log = (msg: string, fields: Record<string, unknown> = {}): void => {
  console.error(JSON.stringify({ ts: new Date().toISOString(), level: 'info', msg, ...fields }));
};
log('torture: starting', { seed, minutes, repeat: `bun run torture --minutes ${minutes} --seed ${seed}` });
await ensureKafkaJars(kafkaTools(process.env).cacheDir);
const report = await runTorture({ durationMs: minutes * 60_000, seed, log });
const c = report.check;
console.log(
  JSON.stringify(
    {
      seed: report.seed,
      minutes,
      faults: report.faults,
      acknowledged: c.acknowledged,
      unknown: c.unknown,
      failed: c.failed,
      lost: c.lost.length,
      lost_background: c.lostBackground,
      duplicated: c.duplicated.length,
      out_of_order: c.outOfOrder.length,
      phantom: c.phantom.length,
      longest_recovery: report.longestRecovery,
      longest_recovery_ms_by_fault: Object.fromEntries(
        Object.keys(report.faults).map((f) => [f, Math.max(...report.recoveries.filter((r) => r.fault === f).map((r) => r.ms))]),
      ),
      journal_verify: report.journalVerify.ok ? 'clean' : 'damaged',
      violations: report.violations,
    },
    null,
    2,
  ),
);
process.exit(report.violations.length === 0 ? 0 : 1);
