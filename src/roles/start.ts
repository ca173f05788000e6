import { join } from 'node:path';
import type { Config } from '../config.ts';
import { ConfigError, describeError, SluiceError } from '../errors.ts';
import { createApp } from '../http/app.ts';
import { edgeFetch } from '../http/edge.ts';
import { listen, probeListen, readTls } from '../http/listener.ts';
import { Readiness } from '../http/readiness.ts';
import type { Logger } from '../log.ts';
import { zeroTenantSeries } from '../metrics.ts';
import { migrate } from '../outbox/migrate.ts';
import { openChecked } from '../outbox/open-checked.ts';
import { Outbox } from '../outbox/outbox.ts';
import { OutboxGauges } from '../outbox/outbox-gauges.ts';
import { outboxState, probeWritableDir } from '../probes.ts';
import type { Processing } from '../processor/processing.ts';
import { TenantControls, type TenantSnapshot } from '../processor/tenant-controls.ts';
import { openTenantMetrics } from '../tenant-metrics.ts';
import { startIngestRole } from './ingest-role.ts';
import { forwardStranded } from './stranded.ts';
import { linkToSupervisor } from './worker-link.ts';
import { follow } from '../core/watermark.ts';
import { BodyBudget } from '../http/body-budget.ts';

/** `serve` = ingest + processor in one process; `ingest` and `process` are its halves, run apart. */
export type Role = 'serve' | 'ingest' | 'process';

export interface Running {
  readonly url: string;
  /** SIGHUP: re-reads the tenants file and the TLS certificate; a bad one is reported and the one in force kept. */
  reload(): boolean;
  /** Settles with a reason when a part this process cannot run without fails (its local broker exited). */
  readonly failed: Promise<string>;
  /** Graceful stop: refuse new writes, drain, flush, close everything. Safe to call twice. */
  shutdown(reason: string): Promise<void>;
}

/**
 * The composition root of every role: the same app (health, readiness, metrics, admin, the error
 * table) with the parts the role runs. Parts are built in dependency order and closed in reverse; the
 * local broker and the embedded database, the slow ones, start side by side.
 */
export async function startRole(role: Role, config: Config, log: Logger): Promise<Running> {
  const started = performance.now();
  const timings: Record<string, number> = {};
  const timed = async <T>(part: string, p: Promise<T>): Promise<T> => {
    const t = performance.now();
    const value = await p;
    timings[`${part}_ms`] = Math.round(performance.now() - t);
    return value;
  };
  // A supervisor's worker runs one half: ingest on the shared port, or the processor of a `serve` node.
  const worker = config.worker;
  const ingests = role !== 'process' && worker?.kind !== 'processor';
  const publishes = role !== 'ingest' && (worker === undefined || worker.kind === 'processor');
  // A worker's supervisor checked what its role needs before starting it.
  if (worker === undefined) requireSettings(role, config);
  // Read before anything starts: a bad tenants file or certificate stops sluice like a bad variable does.
  if (config.tls !== undefined) readTls(config.tls);
  const { tenants, metrics } = openTenantMetrics(config, log);
  const controls = new TenantControls(tenants, metrics, log);
  const closers: { name: string; close: () => Promise<void> }[] = [];
  const closeAll = async (): Promise<void> => {
    for (const { name, close } of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (err) {
        log.error('close failed', { part: name, error: describeError(err) });
      }
    }
  };
  let fail: (reason: string) => void = () => {};
  const failed = new Promise<string>((resolve) => {
    fail = resolve;
  });

  try {
    if (ingests) {
      // Checked first: an unwritable journal is found in milliseconds, not after the broker started.
      const journalDir = probeWritableDir('SLUICE_JOURNAL_DIR', join(config.journal.dir, config.nodeId));
      if (!journalDir.ok) throw new SluiceError('journal_unavailable', journalDir.detail);
    }
    // Before the database and the processor: a busy port is found before every partition was taken.
    // Workers share the port their supervisor probed, so a probe of their own would find it taken.
    if (worker === undefined) probeListen(config.http.host, config.http.port);
    // A real server is probed before the local broker starts: a database that does not answer then
    // stops sluice within the probe's 5 s, not after a broker start it would have to wait out.
    const external = config.db.url === undefined ? undefined : await timed('database', openChecked(config, log));
    if (external !== undefined) closers.push({ name: 'database', close: () => external.close() });
    const ownBroker = publishes && config.kafka.brokers === undefined;
    // Kafka's client and the broker's tools are loaded where they are used: an ingest process never
    // loads them (~60 MiB of resident memory per process).
    const ownBrokerTools = ownBroker ? await import('./own-broker.ts') : undefined;
    if (ownBrokerTools !== undefined) await ownBrokerTools.checkOwnBrokerPort(config);
    let stopping = false;
    // The local broker starts beside the database; ingest does not wait for it, the processor does.
    const brokerStart = ownBrokerTools === undefined ? undefined : timed('kafka_local', ownBrokerTools.startOwnBroker(config, log));
    if (brokerStart !== undefined) {
      brokerStart.catch(() => {});
      closers.push({ name: 'kafka-local', close: async () => (await brokerStart.catch(() => undefined))?.stop() });
    }
    const database = external ?? (await timed('database', openChecked(config, log)));
    if (external === undefined) closers.push({ name: 'database', close: () => database.close() });
    void database.lost.then((reason) => {
      if (!stopping) fail(reason);
    });
    await timed('migrate', migrate(database.sql, log));
    const outbox = new Outbox(database.sql, config.partitions);
    // With several workers their supervisor did this before starting them.
    if (ingests && worker === undefined) await forwardStranded({ config, outbox, metrics, log });

    const gauges = new OutboxGauges(outbox, tenants, metrics);

    const readiness = new Readiness();
    let processing: Processing | undefined;
    const configuredBrokers = publishes ? config.kafka.brokers : undefined;
    // Closed after ingest, so the rows ingest forwards while it closes are still published.
    if (configuredBrokers !== undefined) closers.push({ name: 'processor', close: async () => processing?.close() });
    const ingest = ingests
      ? await startIngestRole({ config, outbox, tenants, metrics, log, gauges, readiness, timed, closers })
      : undefined;
    // Started after ingest, whose mark of rows entering the outbox it follows.
    const startProcessor = async (brokers: string[]): Promise<Processing> =>
      (processing = await (await import('../processor/processing.ts')).startProcessing({ config, db: database, outbox, brokers, tenants, controls, metrics, log, entered: ingest?.entered, relayed: worker?.kind === 'processor' }));
    if (configuredBrokers !== undefined) await startProcessor(configuredBrokers);
    if (!ingests) {
      readiness.add('outbox', true, () => outboxState(() => outbox.ping(), config.db.url));
    }
    // An ingest node takes writes while Kafka is down: the broker is reported there, never a reason to
    // turn writes away. A processor alone is ready when it can publish.
    readiness.add('kafka', !ingests, () =>
      publishes
        ? (processing?.kafkaReadiness() ?? { ok: false, detail: `the local Kafka broker on 127.0.0.1:${config.kafka.localPort} is starting` })
        : { ok: true, detail: role === 'serve' ? "not used by an ingest worker: the node's processor process publishes its writes" : 'not used by an ingest node: `sluice process` instances publish its writes' },
    );

    let draining = false;
    const stopRelay = new AbortController();
    const app = createApp({
      log,
      metrics,
      ingest: ingest === undefined ? undefined : {
        write: ingest.write,
        maxBodyBytes: config.http.maxBodyBytes,
        bodyBudget: new BodyBudget(config.http.maxBodyBytesInFlight, metrics.ingestBodyBytes),
        maxBatchLines: config.ingest.maxBatchLines,
        maxJsonDepth: config.ingest.maxJsonDepth,
        maxLineBytes: config.ingest.maxLineBytes,
      },
      progressTopic: config.processor.progressTopic,
      defaultTopic: config.kafka.topic,
      tenants,
      admin: config.adminToken === undefined ? undefined : { token: config.adminToken, outbox, controls: (ids, reset) => controlsOfNode(ids, reset), wake: () => wakeAfterReplay() },
      draining: () => draining,
      readiness,
      beforeScrape: async () => {
        ingest?.beforeScrape();
        await gauges.forScrape((err) => log.warn('outbox gauges not refreshed', { error: describeError(err) }));
      },
      ...(publishes ? { health: () => ({ partitions_owned: processing?.processor.owned.size ?? 0 }) } : {}),
    });

    const link = worker === undefined ? undefined : linkToSupervisor(async () => {
      ingest?.beforeScrape();
      await gauges.forScrape((err) => log.warn('outbox gauges not refreshed', { error: describeError(err) }));
      return metrics.registry.getMetricsAsJSON();
    }, () => {
      if (stopping) return;
      log.error('the supervisor exited: this worker stops');
      // Through the signal handler, so the drain and the exit are those of a SIGTERM.
      process.kill(process.pid, 'SIGTERM');
    });
    if (link !== undefined && ingest !== undefined && role === 'serve') {
      // The node's processor runs in a process of its own: it hears of these rows through the supervisor.
      const relay = link;
      follow(ingest.entered, stopRelay.signal, () => {
        const partitions = outbox.takeEntered();
        if (partitions.length > 0) relay.entered(partitions);
      });
    }
    /**
     * Re-queued rows keep their old ids, which the processor's regular poll does not look at: its
     * tasks are told to look, here or (a worker of a `serve` node) through the supervisor. A node
     * without a processor leaves them to the owning tasks' own 5-s pass.
     */
    const wakeAfterReplay = (): void => {
      if (processing !== undefined) processing.processor.wake();
      else if (role === 'serve') link?.entered(Array.from({ length: config.partitions }, (_, p) => p));
    };
    /**
     * Breakers and quotas are the processor's: a worker of a `serve` node asks the node's processor
     * process (through the supervisor); any other process answers with its own.
     */
    const controlsOfNode = async (ids: string[], reset?: string): Promise<Record<string, TenantSnapshot>> =>
      link !== undefined && role === 'serve' && worker?.kind !== 'processor' ? link.controls(ids, reset) : controlsHere(ids, reset);
    /** A closed breaker lets its tenant's held rows out now: the tasks look at once, not at their next pass. */
    const controlsHere = (ids: string[], reset?: string): Record<string, TenantSnapshot> => {
      const snapshots = controls.snapshots(ids, reset);
      if (reset !== undefined) processing?.processor.wake();
      return snapshots;
    };
    if (worker?.kind === 'processor') {
      link?.onControls(controlsHere);
      link?.onWake((partitions) => processing?.processor.wakePartitions(partitions));
      // The processor of a `serve` node: no port of its own, its metrics reach the node's /metrics
      // through the supervisor.
      timings.total_ms = Math.round(performance.now() - started);
      log.info('sluice processor running', { role, node_id: config.nodeId, guarantee: config.processor.guarantee, database: database.kind, ...timings });
      link?.ready(undefined);
    }
    const server = worker?.kind === 'processor' ? undefined : listen({
      host: config.http.host,
      port: config.http.port,
      tls: config.tls,
      fetch: link === undefined ? edgeFetch(app.fetch) : link.fetch(edgeFetch(app.fetch)),
      reusePort: worker !== undefined,
      // Our own reader answers every oversize body with sluice's JSON 413 (a declared length before
      // reading anything, a chunked one as soon as it passes the limit); Bun's own limit would
      // answer first with an empty 413, so it is out of the way.
      maxRequestBodySize: ingests ? Number.MAX_SAFE_INTEGER : 64 * 1024,
      log,
    });
    if (server !== undefined) {
      closers.push({ name: 'http', close: () => server.stop() });
      timings.total_ms = Math.round(performance.now() - started);
      log.info('sluice listening', {
        url: server.url,
        role,
        node_id: config.nodeId,
        ...(ingests ? { write_mode: config.writeMode } : {}),
        ...(publishes ? { guarantee: config.processor.guarantee } : {}),
        database: database.kind,
        tls: config.tls !== undefined,
        ...timings,
      });
      link?.ready(server.url);
    }
    brokerStart?.then(
      (own) => {
        if (stopping) return;
        log.info('local kafka ready', { bootstrap: own.bootstrap, kafka_local_ms: timings.kafka_local_ms, since_start_ms: Math.round(performance.now() - started) });
        startProcessor([own.bootstrap]).then((running) => closers.push({ name: 'processor', close: () => running.close() })).catch((err: unknown) => {
          if (!stopping) fail(`the processor did not start: ${describeError(err)}`);
        });
        // Whatever holds the port after the broker died is not ours: stop rather than publish to it.
        void own.exited.then((code) => {
          if (!stopping) fail(`the local Kafka broker exited (code ${code}); see ${join(own.dataDir, 'broker.log')}`);
        });
      },
      (err: unknown) => {
        if (!stopping) fail(err instanceof SluiceError ? err.message : describeError(err));
      },
    );

    let shutdown: Promise<void> | undefined;
    return {
      url: server?.url ?? '',
      failed,
      reload() {
        const reloaded = tenants.reload();
        if (reloaded) zeroTenantSeries(metrics, tenants.labelledConfigured());
        const tls = server?.reloadTls() ?? false;
        return reloaded || tls;
      },
      shutdown(reason) {
        shutdown ??= (async () => {
          // The broker's state is no news once stopping: its probe ends first, so shutdown stays quiet.
          void processing?.kafka.stop().catch(() => {});
          log.info('shutting down', { reason, ...(ingest !== undefined ? { in_flight: ingest.inFlight() } : {}) });
          draining = true;
          stopping = true;
          ingest?.stopWaiting();
          // The listener stays open while requests are still being answered, so a load balancer's
          // /readyz sees `draining` (503) instead of a refused connection; new writes get 503.
          const until = performance.now() + HTTP_DRAIN_MS;
          while (server !== undefined && server.pendingRequests > 0 && performance.now() < until) await Bun.sleep(20);
          await closeAll();
          // Only now: what the drain forwarded, the processor still hears of and publishes.
          stopRelay.abort();
          log.info('shutdown complete');
        })();
        return shutdown;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** How long shutdown keeps the listener open for requests still being answered. */
const HTTP_DRAIN_MS = 5_000;

/** What a role cannot run without, all reported at once. */
export function requireSettings(role: Role, config: Config): void {
  if (role === 'serve') return;
  if (role === 'ingest') {
    if (config.db.url !== undefined) return;
    const message =
      'DATABASE_URL must be set for ingest: its writes are published by `sluice process` instances sharing its outbox, and the embedded database is private to this process, so nothing could ever publish them; set DATABASE_URL to the shared Postgres, or run `sluice serve` (ingest and processor in one process)';
    throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'DATABASE_URL', message }]);
  }
  const missing = [
    ...(config.db.url === undefined ? [{ path: 'DATABASE_URL', message: 'DATABASE_URL must be set for process: the processor shares the outbox with other instances, so it needs a real Postgres' }] : []),
    ...(config.kafka.brokers === undefined ? [{ path: 'KAFKA_BROKERS', message: 'KAFKA_BROKERS must be set for process: it publishes to a Kafka cluster you run (only serve starts a local broker)' }] : []),
  ];
  if (missing.length > 0) throw new ConfigError(`invalid configuration: ${missing.map((m) => m.message).join('; ')}`, missing);
}
