import { parseArgs, type ParseArgsConfig } from 'node:util';
import { didYouMean } from './did-you-mean.ts';

/** What each command accepts: checked before it runs, so a wrong argument never starts anything. */
export interface CommandSpec {
  /** `journal verify` for a subcommand. */
  name: string;
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Positional arguments: exact count, or `min` and up. */
  positionals: { min: number; max: number };
  /** Options that take a whole number in decimal digits, with its range. */
  integers?: Record<string, { min: number; max: number }>;
}

const NONE = { min: 0, max: 0 };
const WORKERS =
  'SLUICE_WORKERS=N (default 1) runs ingest in N processes sharing SLUICE_PORT, worker i journaling as\n<SLUICE_NODE_ID>-i (serve also runs its processor in a process of its own); it needs DATABASE_URL.\nSignals go to every process; one that dies stops them all (exit 1). README.md#workers';
const CONFIG = 'configuration: SLUICE_* environment variables, DATABASE_URL, KAFKA_BROKERS (README.md#configuration)';

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'serve',
    summary: 'ingest + processor on one node (what `bun start` runs)',
    usage: `usage: sluice serve\n\nRuns the HTTP ingest API, the journal, the forwarder and the processor. With no DATABASE_URL it\nstarts an embedded database in SLUICE_DATA_DIR; with no KAFKA_BROKERS a local Kafka broker on\nSLUICE_KAFKA_LOCAL_PORT. SIGHUP reloads the tenants file (and the TLS certificate); SIGTERM drains\nand exits 0.\n\nSLUICE_PROCESSOR (default auto) runs the processor in a process of its own when DATABASE_URL and\nKAFKA_BROKERS are set on 2 or more cores, in the one process otherwise; process or inline force it.\n\n${WORKERS}\n\n${CONFIG}`,
    options: {},
    positionals: NONE,
  },
  {
    name: 'ingest',
    summary: 'ingest (HTTP, journal, forwarder) without the processor',
    usage: `usage: sluice ingest\n\nLike serve, without the processor: run \`sluice process\` elsewhere on the same outbox. Needs\nDATABASE_URL, the Postgres those processors share (the embedded database is private to one process).\n\n${WORKERS}\n\n${CONFIG}`,
    options: {},
    positionals: NONE,
  },
  {
    name: 'process',
    summary: 'a processor alone (needs DATABASE_URL and KAFKA_BROKERS): scale publishing out',
    usage: `usage: sluice process\n\nPublishes the shared outbox to Kafka beside serve or ingest instances, and serves /healthz,\n/readyz and /metrics on SLUICE_HOST:SLUICE_PORT. Needs DATABASE_URL and KAFKA_BROKERS.\n\n${CONFIG}`,
    options: {},
    positionals: NONE,
  },
  {
    name: 'check',
    summary: 'validate the configuration and tenants file; probe database, Kafka and journal directory',
    usage: `usage: sluice check [--timeout-ms N]\n\nValidates the environment and the tenants file, then probes the database, the Kafka brokers and\nthe journal directory (each within --timeout-ms, default 5000), printing one line per component.\nExit 0 when everything is usable, 1 when a component is not, 2 for invalid configuration.\n\n${CONFIG}`,
    options: { 'timeout-ms': { type: 'string' } },
    positionals: NONE,
    integers: { 'timeout-ms': { min: 1, max: 600_000 } },
  },
  {
    name: 'migrate',
    summary: 'apply database migrations and exit',
    usage: `usage: sluice migrate\n\nApplies the SQL migrations to DATABASE_URL (or the embedded database) and exits.\n\n${CONFIG}`,
    options: {},
    positionals: NONE,
  },
  {
    name: 'kafka-local',
    summary: 'run a single-node Apache Kafka broker in the foreground',
    usage:
      'usage: sluice kafka-local [--port N] [--data-dir DIR] [--bootstrap-file PATH]\n\nStarts a single-node Kafka broker (KRaft, loopback only; jars fetched once with Maven) and runs it\nuntil SIGINT/SIGTERM. Fails (exit 1) when the port is taken or the broker does not come up.\n--bootstrap-file gets the broker address once it is ready.',
    options: { port: { type: 'string' }, 'data-dir': { type: 'string' }, 'bootstrap-file': { type: 'string' } },
    positionals: NONE,
    integers: { port: { min: 1, max: 65_535 } },
  },
  {
    name: 'replay',
    summary: 'replay journal files (plain or gzipped) into the outbox, idempotently',
    usage:
      "usage: sluice replay <dir|glob>... [--tenant T] [--since ISO] [--until ISO] [--dry-run]\n\nReplays journal files (plain and gzipped) into the outbox, idempotently: a (tenant, dedupe_key)\nalready there is counted as a duplicate and left alone. A directory means every journal file below\nit (a journal root, or one node's directory); anything else is a glob (quote it).\n\n  --tenant T     only this tenant's records\n  --since ISO    only records journaled at or after this time\n  --until ISO    only records journaled before this time\n  --dry-run      write nothing (not even the outbox's tables): count what would be inserted and\n                 what is a duplicate, of the outbox or of an earlier line of the same run\n\nProgress goes to stderr (redrawn on a terminal, a JSON line every few seconds otherwise), the\nsummary to stdout. Exit 0: replayed, no problem found; 1: nothing matched, or bad lines, seq gaps\nor unreadable files were found (listed in the summary); 2: wrong arguments.",
    options: { tenant: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    positionals: { min: 1, max: Number.POSITIVE_INFINITY },
  },
  {
    name: 'journal verify',
    summary: 'check every journal segment; non-zero exit on damage',
    usage: 'usage: sluice journal verify <dir>\n\nReads every segment under <dir> (plain and gzipped) and reports seq gaps, bad lines, torn tails and a\ncheckpoint the files contradict.\nExit 0 when the journal is whole, 1 when it is damaged.',
    options: {},
    positionals: { min: 1, max: 1 },
  },
];

export function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
  return `usage: sluice <command> [options]      (bun run sluice <command>)\n\ncommands:\n${lines.join('\n')}\n\n  sluice <command> --help   that command's usage\n  sluice --version\n\n${CONFIG}`;
}

/** The problem with `args` for `spec`, or undefined when they fit. */
export function argumentProblem(spec: CommandSpec, args: string[]): string | undefined {
  try {
    const { values, positionals } = parseArgs({ args: negativeIntegersJoined(spec, args), options: spec.options, allowPositionals: true, strict: true });
    if (positionals.length < spec.positionals.min) return `${spec.name}: missing argument`;
    if (positionals.length > spec.positionals.max) return `${spec.name}: unexpected argument ${positionals[spec.positionals.max] ?? ''}`;
    for (const [name, { min, max }] of Object.entries(spec.integers ?? {})) {
      const value = values[name];
      if (typeof value !== 'string') continue;
      const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
      if (!(n >= min && n <= max)) return `${spec.name}: --${name} must be a whole number from ${min} to ${max}, not "${value}"`;
    }
    return undefined;
  } catch (err) {
    return `${spec.name}: ${parseProblem(spec, err)}`;
  }
}

/**
 * `--timeout-ms -5` as `--timeout-ms=-5`, for an option that takes a whole number: parseArgs calls
 * the first "ambiguous" (it might be an option), where the range is what the operator needs to read.
 */
function negativeIntegersJoined(spec: CommandSpec, args: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const next = args[i + 1];
    if (arg.startsWith('--') && spec.integers?.[arg.slice(2)] !== undefined && next !== undefined && /^-[0-9]/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  return joined;
}

/** parseArgs's error in sluice's words: the option at fault and what to write instead. */
function parseProblem(spec: CommandSpec, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown }).code;
  const option = /Option '(-[^ ']+)/.exec(message)?.[1] ?? /option '(-[^']+)'/i.exec(message)?.[1];
  const known = Object.keys(spec.options).map((o) => `--${o}`);
  const see = `see sluice ${spec.name} --help`;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) {
    const guess = didYouMean(option.split('=')[0] ?? option, known);
    const hint = guess !== undefined ? `did you mean ${guess}?` : known.length === 0 ? `${spec.name} takes no options` : `its options are ${known.join(', ')}`;
    return `unknown option ${option}: ${hint} (${see})`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) {
    if (message.includes('does not take an argument')) return `${option} takes no value: write ${option} alone`;
    return `${option} needs a value: write ${option} VALUE, or ${option}=VALUE for a value that starts with -`;
  }
  return `${message} (${see})`;
}

export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}
