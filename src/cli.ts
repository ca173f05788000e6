import { parseArgs } from 'node:util';
import { argumentProblem, COMMANDS, overview, wantsHelp, type CommandSpec } from './cli-commands.ts';
import { loadConfig, type Config } from './config.ts';
import { guardProcess } from './crash-guard.ts';
import { ConfigError, describeError, SluiceError } from './errors.ts';
import { createLogger, type Logger } from './log.ts';
import { sizeEngineMemory } from './roles/engine-memory.ts';
import type { Running } from './roles/start.ts';
import { reloadsFromSupervisor } from './roles/worker-link.ts';
import { VERSION } from './version.ts';

// Commands load their parts when they run: --help, --version and a wrong argument answer at once.
const stdout = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

/** The command `argv` names (`journal verify` takes two words) and its own arguments. */
function commandOf(argv: string[]): { spec: CommandSpec; args: string[] } | undefined {
  for (const spec of COMMANDS) {
    const words = spec.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { spec, args: argv.slice(words.length) };
  }
  return undefined;
}

async function main(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first === undefined) {
    process.stderr.write(`${overview()}\n`);
    return 2;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const named = argv[1] === undefined ? undefined : commandOf(argv.slice(1));
    stdout(named?.spec.usage ?? overview());
    return 0;
  }
  if (first === '--version' || first === '-v' || first === 'version') {
    if (argv.length > 1) {
      process.stderr.write(`sluice ${first}: unexpected argument ${argv[1]}\n\n${overview()}\n`);
      return 2;
    }
    stdout(`sluice ${VERSION} (bun ${Bun.version})`);
    return 0;
  }
  const found = commandOf(argv);
  if (found === undefined) {
    const journal = first === 'journal' ? COMMANDS.find((c) => c.name === 'journal verify') : undefined;
    if (journal !== undefined && wantsHelp(argv.slice(1))) {
      stdout(journal.usage);
      return 0;
    }
    if (journal !== undefined && argv.length === 1) {
      process.stderr.write(`sluice journal: which subcommand?\n\n${journal.usage}\n`);
      return 2;
    }
    process.stderr.write(`sluice: unknown command ${argv.slice(0, first === 'journal' ? 2 : 1).join(' ')}\n\n${overview()}\n`);
    return 2;
  }
  const { spec, args } = found;
  if (wantsHelp(args)) {
    stdout(spec.usage);
    return 0;
  }
  const problem = argumentProblem(spec, args);
  if (problem !== undefined) {
    process.stderr.write(`sluice ${problem}\n\n${spec.usage}\n`);
    return 2;
  }
  if (spec.name === 'kafka-local') {
    const { runKafkaLocal } = await import('./kafka/kafka-local-command.ts');
    return runKafkaLocal(args);
  }
  if (spec.name === 'journal verify') return (await import('./journal/commands.ts')).runJournalVerify(args);

  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      if (spec.name === 'check') for (const d of err.details ?? []) stdout(`config     FAIL  ${d.message}`);
      else createLogger().error('invalid configuration', { errors: err.details?.map((d) => d.message) });
      return 2;
    }
    throw err;
  }
  // Before anything is opened: the process may replace itself here (src/roles/engine-memory.ts).
  const unsized = spec.name === 'serve' || spec.name === 'ingest' || spec.name === 'process' ? sizeEngineMemory(config.memoryMiB) : undefined;
  const worker = config.worker === undefined ? {} : { worker: config.worker.kind === 'processor' ? 'processor' : config.worker.index };
  const log = createLogger({ level: config.logLevel, base: { node_id: config.nodeId, ...worker } });
  // Once a node: its workers inherit the environment the warning is about.
  if (unsized !== undefined && config.worker === undefined) log.warn(unsized);
  switch (spec.name) {
    case 'serve':
    case 'ingest': {
      const role = spec.name === 'serve' ? 'serve' : 'ingest';
      if (config.worker === undefined && (config.workers > 1 || (role === 'serve' && config.processorApart))) {
        // Its workers drain within the timeout each, the ingest ones first and then the processor.
        const timeout = { ...config, shutdownTimeoutMs: 2 * config.shutdownTimeoutMs + 1_000 };
        return runUntilSignal(async () => (await import('./roles/supervisor.ts')).startSupervisor(role, config, log), timeout, log, true);
      }
      return runUntilSignal(async () => (await import('./roles/start.ts')).startRole(role, config, log), config, log, config.worker !== undefined);
    }
    case 'process': {
      return runUntilSignal(async () => (await import('./roles/start.ts')).startRole('process', config, log), config, log, false);
    }
    case 'check':
      return (await import('./check-command.ts')).runCheck(config, checkTimeout(args), stdout);
    case 'migrate':
      return startOrExplain(() => runMigrate(config, log), log);
    case 'replay': {
      const { runReplay } = await import('./journal/commands.ts');
      return startOrExplain(() => runReplay(args, config, log), log);
    }
    default:
      throw new SluiceError('internal', `command ${spec.name} has no runner`);
  }
}

/** `--timeout-ms`, already checked by argumentProblem; 5000 when not given. */
function checkTimeout(args: string[]): number {
  const { values } = parseArgs({ args, options: { 'timeout-ms': { type: 'string' } }, strict: true });
  return values['timeout-ms'] === undefined ? 5_000 : Number(values['timeout-ms']);
}

/**
 * Runs a start-up step. A SluiceError from it (a setting that does not work: the database at
 * DATABASE_URL does not answer, the journal directory is not writable) is logged once, with its
 * message naming the setting and the fix; exit 2 for invalid configuration, 1 otherwise.
 */
async function startOrExplain<T>(start: () => Promise<T>, log: Logger): Promise<T | number> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error('invalid configuration', { errors: err.details?.map((d) => d.message) });
      return 2;
    }
    if (err instanceof SluiceError) {
      log.error('sluice cannot start', { code: err.code, error: err.message });
      return 1;
    }
    throw err;
  }
}

/** `supervisedNode`: this process is a supervisor or one of the processes it started. */
async function runUntilSignal(start: () => Promise<Running>, config: Config, log: Logger, supervisedNode: boolean): Promise<number> {
  guardProcess(log);
  // Listened for before the start (the roles' modules are loaded inside it, which takes most of a
  // second on a busy machine): a signal during it (a slow database, a broker start) would
  // otherwise kill the process mid-way (SIGTERM) or be lost (SIGINT). It is acted on once the start
  // settles, so what started is stopped in order.
  // SIGHUP too: a reload asked for while starting (the "listening" line is out before the start
  // settles) is done once it has, rather than the signal's default ending the process.
  let signalled: string | undefined;
  let onSignal = (signal: string): void => {
    signalled ??= signal;
  };
  let reloadAsked = false;
  let onReload = (): void => {
    reloadAsked = true;
  };
  // In a supervised node, a signal sent to the whole group (a terminal's Ctrl-C, systemd's
  // control-group stop, `timeout`) reaches each process besides the one the supervisor forwards: the
  // second must not end the drain the first began.
  const listen = supervisedNode ? process.on.bind(process) : process.once.bind(process);
  listen('SIGTERM', () => onSignal('SIGTERM'));
  listen('SIGINT', () => onSignal('SIGINT'));
  // Open mode without TLS has nothing to re-read: said once here, rather than by no line at all.
  const reloadable = config.tenantsFile !== undefined || config.tls !== undefined;
  const sighup = (): void => (reloadable ? onReload() : log.info('SIGHUP ignored: nothing to reload (no SLUICE_TENANTS_FILE, no SLUICE_TLS_CERT_FILE)'));
  if (config.worker === undefined) process.on('SIGHUP', sighup);
  else reloadsFromSupervisor(() => onReload());
  const running = await startOrExplain(start, log);
  if (typeof running === 'number') return running;
  onReload = () => running.reload();
  if (reloadAsked) running.reload();
  return new Promise((resolve) => {
    const stop = (signal: string, code = 0): void => {
      const timer = setTimeout(() => {
        log.error('shutdown timed out', { timeout_ms: config.shutdownTimeoutMs });
        resolve(1);
      }, config.shutdownTimeoutMs);
      running.shutdown(signal).then(
        () => {
          clearTimeout(timer);
          resolve(code);
        },
        (err: unknown) => {
          clearTimeout(timer);
          log.error('shutdown failed', { error: describeError(err) });
          resolve(1);
        },
      );
    };
    onSignal = (signal) => stop(signal);
    if (signalled !== undefined) stop(signalled);
    void running.failed.then((reason) => {
      log.error('sluice stopping: a part it cannot run without failed', { reason });
      stop('failure', 1);
    });
  });
}

async function runMigrate(config: Config, log: Logger): Promise<number> {
  const [{ openChecked }, { migrate }] = await Promise.all([import('./outbox/open-checked.ts'), import('./outbox/migrate.ts')]);
  const db = await openChecked(config, log);
  try {
    const result = await migrate(db.sql, log);
    log.info('migrations done', { applied: result.applied, current: result.current });
    return 0;
  } finally {
    await db.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    createLogger().error('sluice failed', { error: describeError(err) });
    process.exit(1);
  },
);
