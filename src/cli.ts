import { loadConfig, type Config } from './config.ts';
import { guardProcess } from './crash-guard.ts';
import { ConfigError, describeError } from './errors.ts';
import { createLogger, type Logger } from './log.ts';
import { runJournalVerify, runReplay } from './journal/commands.ts';
import { openDatabase } from './outbox/db.ts';
import { migrate } from './outbox/migrate.ts';
import { runProcessor } from './process.ts';
import { serve, type Running } from './serve.ts';

const USAGE = `usage: bun run sluice <command>

commands:
  serve         ingest + processor in one process (what \`bun start\` runs)
  ingest        ingest (HTTP, journal, forwarder) without the processor
  process       a processor alone (needs DATABASE_URL and KAFKA_BROKERS): scale publishing out
  migrate       apply database migrations and exit
  kafka-local   run a single-node Apache Kafka broker in the foreground
  replay <globs...> [--tenant T] [--since ISO] [--until ISO] [--dry-run]
                replay journal files (plain or gzipped) into the outbox, idempotently
  journal verify <dir>
                check every journal segment; non-zero exit on damage

configuration: SLUICE_* environment variables, DATABASE_URL, KAFKA_BROKERS (see README.md)`;

async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'kafka-local') {
    const { runKafkaLocal } = await import('../scripts/kafka-local.ts');
    return runKafkaLocal(argv.slice(1));
  }
  if (command === 'journal') {
    if (argv[1] !== 'verify') {
      console.error(`unknown journal command: ${argv[1] ?? '(none)'}\n\n${USAGE}`);
      return 2;
    }
    return runJournalVerify(argv.slice(2));
  }
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      const log = createLogger();
      log.error('invalid configuration', { errors: err.details?.map((d) => d.message) });
      return 2;
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, base: { node_id: config.nodeId } });
  switch (command) {
    case 'serve':
      return runUntilSignal(() => serve(config, log), config, log);
    case 'ingest':
      return runUntilSignal(() => serve(config, log, { processor: false }), config, log);
    case 'process':
      return runUntilSignal(() => runProcessor(config, log), config, log);
    case 'migrate':
      return runMigrate(config, log);
    case 'replay':
      return runReplay(argv.slice(1), config, log);
    default:
      console.error(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

async function runUntilSignal(start: () => Promise<Running>, config: Config, log: Logger): Promise<number> {
  guardProcess(log);
  let running: Running;
  try {
    running = await start();
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error('invalid configuration', { errors: err.details?.map((d) => d.message) });
      return 2;
    }
    throw err;
  }
  process.on('SIGHUP', () => running.reloadTenants());
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      const timer = setTimeout(() => {
        log.error('shutdown timed out', { timeout_ms: config.shutdownTimeoutMs });
        resolve(1);
      }, config.shutdownTimeoutMs);
      running.shutdown(signal).then(
        () => {
          clearTimeout(timer);
          resolve(0);
        },
        (err: unknown) => {
          clearTimeout(timer);
          log.error('shutdown failed', { error: describeError(err) });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function runMigrate(config: Config, log: Logger): Promise<number> {
  const db = await openDatabase(config.db, log);
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
