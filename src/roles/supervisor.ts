import { AggregatorRegistry, type Aggregator, type Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { ConfigError, describeError, SluiceError } from '../errors.ts';
import { probeListen, readTls } from '../http/listener.ts';
import type { Logger } from '../log.ts';
import { migrate } from '../outbox/migrate.ts';
import { openChecked } from '../outbox/open-checked.ts';
import { Outbox } from '../outbox/outbox.ts';
import { probeWritableDir } from '../probes.ts';
import { openTenantMetrics } from '../tenant-metrics.ts';
import { requireSettings, type Running } from './start.ts';
import { forwardStranded, workerNodeIds } from './stranded.ts';
import type { MetricsJson, ToSupervisor, ToWorker } from './worker-link.ts';

interface Child {
  /** `worker 2`, `processor`: how logs and errors name it. */
  name: string;
  kind: 'ingest' | 'processor';
  proc: Bun.Subprocess<'ignore', 'inherit', 'inherit'>;
  ready: Promise<string | undefined>;
}

/**
 * Gauges every process reads from the shared outbox (or sets from the configuration): the node's
 * value is any one process's, not their sum. The rest (counters, histograms, a process's own
 * gauges such as its journal bytes or resident memory) add up to the node's.
 */
const NOT_SUMMED: Record<string, Aggregator> = {
  sluice_outbox_pending: 'max',
  sluice_outbox_dead: 'max',
  sluice_outbox_oldest_pending_seconds: 'max',
  sluice_partitions: 'max',
  sluice_build_info: 'max',
  sluice_kafka_reachable: 'max',
  sluice_breaker_state: 'max',
  process_start_time_seconds: 'min',
};

/** How long the supervisor waits for every worker's metrics before a scrape is answered 503. */
const COLLECT_TIMEOUT_MS = 5_000;

/**
 * `serve` or `ingest` with SLUICE_WORKERS above 1 (README.md, "Workers"): checks what it can once
 * (the tenants file, the certificate, the port, the database), forwards journals a smaller worker
 * count left behind, then starts the workers (each `sluice <role>` with node id `<id>-<i>` on the
 * shared port) and, for `serve`, the processor in a process of its own. It serves nothing itself;
 * /metrics on any worker is the sum over all of them, gathered here.
 */
export async function startSupervisor(role: 'serve' | 'ingest', config: Config, log: Logger): Promise<Running> {
  requireSettings(role, config);
  // The journal root holds the workers' directories and the record of their count: found unwritable
  // in milliseconds, as by one process.
  const journalDir = probeWritableDir('SLUICE_JOURNAL_DIR', config.journal.dir);
  if (!journalDir.ok) throw new SluiceError('journal_unavailable', journalDir.detail);
  if (config.tls !== undefined) readTls(config.tls);
  const { metrics } = openTenantMetrics(config, log);
  // Port 0 means one port the system chooses for all workers, not one each.
  const port = probeListen(config.http.host, config.http.port);
  const db = await openChecked(config, log);
  try {
    await migrate(db.sql, log);
    await forwardStranded({ config, outbox: new Outbox(db.sql, config.partitions), metrics, log });
  } finally {
    await db.close();
  }

  const children: Child[] = [];
  let stopping = false;
  let fail: (reason: string) => void = () => {};
  const failed = new Promise<string>((resolve) => {
    fail = resolve;
  });
  const scrapes = new Map<number, { want: number; got: MetricsJson[]; done: (all: MetricsJson[]) => void }>();
  let nextCollect = 0;

  const collectAll = (): Promise<MetricsJson[]> => {
    const id = ++nextCollect;
    const live = children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Counted before the scrape is forgotten: after, every process would look silent.
        const silent = live.length - (scrapes.get(id)?.got.length ?? 0);
        scrapes.delete(id);
        reject(new SluiceError('not_ready', `${silent} of ${live.length} processes did not answer within ${COLLECT_TIMEOUT_MS} ms`));
      }, COLLECT_TIMEOUT_MS);
      scrapes.set(id, {
        want: live.length,
        got: [],
        done: (all) => {
          clearTimeout(timer);
          resolve(all);
        },
      });
      for (const c of live) c.proc.send({ t: 'collect', id } satisfies ToWorker);
    });
  };

  const answerScrape = (from: Child, id: number): void => {
    collectAll().then(
      async (all) => {
        const summed: Registry = AggregatorRegistry.aggregate(all.map((m) => m.map((metric) => ({ ...metric, aggregator: NOT_SUMMED[metric.name] ?? 'sum' }))));
        from.proc.send({ t: 'scraped', id, text: await summed.metrics(), contentType: summed.contentType } satisfies ToWorker);
      },
      (err: unknown) => from.proc.send({ t: 'scrape_failed', id, message: err instanceof SluiceError ? err.message : describeError(err) } satisfies ToWorker),
    );
  };

  const processor = (): Child | undefined => children.find((c) => c.kind === 'processor' && c.proc.exitCode === null && c.proc.signalCode === null);
  // Rows an ingest worker inserted are published now rather than at the processor's next poll.
  const wakeProcessor = (partitions: number[]): void => {
    processor()?.proc.send({ t: 'wake', partitions } satisfies ToWorker);
  };
  // A worker's admin API asks about the breakers and quotas, which live in the processor process.
  const controlsAsked = new Map<number, { from: Child; to: Child; id: number }>();
  let nextControls = 0;
  const askControls = (from: Child, message: Extract<ToSupervisor, { t: 'controls' }>): void => {
    const to = processor();
    if (to === undefined) {
      from.proc.send({ t: 'controls_failed', id: message.id, message: 'this node runs no processor process' } satisfies ToWorker);
      return;
    }
    const id = ++nextControls;
    controlsAsked.set(id, { from, to, id: message.id });
    to.proc.send({ ...message, id } satisfies ToWorker);
  };
  const answerControls = (message: Extract<ToSupervisor, { t: 'controls_state' }>): void => {
    const asked = controlsAsked.get(message.id);
    controlsAsked.delete(message.id);
    asked?.from.proc.send({ ...message, id: asked.id } satisfies ToWorker);
  };
  // A processor that exits answers nothing more: its callers are told now rather than at their timeout.
  const processorGone = (gone: Child): void => {
    for (const [id, asked] of controlsAsked) {
      if (asked.to !== gone) continue;
      controlsAsked.delete(id);
      if (asked.from.proc.exitCode === null && asked.from.proc.signalCode === null) {
        asked.from.proc.send({ t: 'controls_failed', id: asked.id, message: 'the processor process exited' } satisfies ToWorker);
      }
    }
  };

  const spawn = (name: string, kind: Child['kind'], env: Record<string, string>): Child => {
    let started: (url: string | undefined) => void = () => {};
    const ready = new Promise<string | undefined>((resolve) => {
      started = resolve;
    });
    const child: Child = {
      name,
      kind,
      ready,
      proc: Bun.spawn({
        cmd: [process.execPath, ...workerBunFlags(process.execArgv), Bun.main, role],
        env: { ...process.env, ...env, SLUICE_PORT: String(port) },
        stdin: 'ignore',
        stdout: 'inherit',
        stderr: 'inherit',
        ipc(message: ToSupervisor) {
          if (message.t === 'ready') started(message.url);
          else if (message.t === 'scrape') answerScrape(child, message.id);
          else if (message.t === 'entered') wakeProcessor(message.partitions);
          else if (message.t === 'controls') askControls(child, message);
          else if (message.t === 'controls_state') answerControls(message);
          else {
            const scrape = scrapes.get(message.id);
            if (scrape === undefined) return;
            scrape.got.push(message.metrics);
            if (scrape.got.length === scrape.want) {
              scrapes.delete(message.id);
              scrape.done(scrape.got);
            }
          }
        },
        onExit(_proc, code, signal) {
          if (kind === 'processor') processorGone(child);
          if (stopping) return;
          fail(`${name} (pid ${child.proc.pid}) exited ${signal === null ? `with code ${code}` : `on ${signal}`}`);
        },
      }),
    };
    children.push(child);
    return child;
  };

  // Whatever ends the supervisor ends its workers: none is left holding the port or a journal.
  const killAll = (): void => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  };
  process.once('exit', killAll);

  workerNodeIds(config.nodeId, config.workers).forEach((nodeId, i) =>
    spawn(`worker ${i + 1}`, 'ingest', { SLUICE_WORKER: String(i + 1), SLUICE_NODE_ID: nodeId }),
  );
  if (role === 'serve') spawn('processor', 'processor', { SLUICE_WORKER: 'processor' });

  // A worker that does not start ends the start: it has logged why, and its exit code says what kind.
  const exitedEarly = Promise.race(children.map(async (c) => ({ child: c, code: await c.proc.exited })));
  const started = await Promise.race([Promise.all(children.map((c) => c.ready)), exitedEarly]);
  if (!Array.isArray(started)) {
    stopping = true;
    for (const c of children) c.proc.kill('SIGTERM');
    await Promise.all(children.map((c) => c.proc.exited));
    const message = `${started.child.name} did not start (exit code ${started.code}): its log lines above say why`;
    if (started.code === 2) throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_WORKERS', message }]);
    throw new SluiceError('internal', message);
  }
  const url = started.find((u) => u !== undefined) ?? '';
  log.info('sluice listening', {
    url,
    role,
    node_id: config.nodeId,
    workers: config.workers,
    pids: Object.fromEntries(children.map((c) => [c.name, c.proc.pid])),
  });

  let shutdown: Promise<void> | undefined;
  return {
    url,
    failed,
    reload() {
      for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.send({ t: 'reload' } satisfies ToWorker);
      return true;
    },
    shutdown(reason) {
      shutdown ??= (async () => {
        stopping = true;
        log.info('shutting down', { reason, workers: config.workers });
        // Ingest first: what the workers forward while they drain is still published by the processor.
        const stop = async (kind: Child['kind']): Promise<string[]> => {
          // One that already died is the failure this shutdown is for, reported as such.
          const group = children.filter((c) => c.kind === kind && c.proc.exitCode === null && c.proc.signalCode === null);
          for (const c of group) c.proc.kill('SIGTERM');
          const codes = await Promise.all(group.map((c) => c.proc.exited));
          return group.flatMap((c, i) => (codes[i] === 0 ? [] : [`${c.name} exited ${c.proc.signalCode ?? `with code ${codes[i]}`}`]));
        };
        const problems = [...(await stop('ingest')), ...(await stop('processor'))];
        if (problems.length > 0) throw new SluiceError('internal', problems.join('; '));
        log.info('shutdown complete');
      })();
      return shutdown;
    },
  };
}

/**
 * The supervisor's own bun flags its workers run under too: the profilers' (`bun --cpu-prof` of a
 * `serve` profiles its ingest workers and processor, each writing its own profile) and `--smol`. A
 * value may be the next argument (`--cpu-prof-dir /tmp/p`): it goes along. Not a profile's name,
 * which every process would write over; not `--watch` or `--hot`: a worker that reloaded itself
 * would run code its supervisor and the other workers do not.
 */
export function workerBunFlags(execArgv: readonly string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] ?? '';
    const m = /^--(?:cpu|heap)-prof(?:-(md|dir|name|interval))?(=.*)?$/.exec(arg);
    if (m === null) {
      if (arg === '--smol') flags.push(arg);
      continue;
    }
    const takesValue = m[1] !== undefined && m[1] !== 'md';
    const value = takesValue && m[2] === undefined ? execArgv[++i] : undefined;
    if (m[1] === 'name') continue;
    flags.push(arg, ...(value === undefined ? [] : [value]));
  }
  return flags;
}
