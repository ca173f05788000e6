import { join } from 'node:path';
import type { Config } from './config.ts';
import { describeError, SluiceError } from './errors.ts';
import { createApp } from './http/app.ts';
import { listen, readTls } from './http/listener.ts';
import { edgeFetch } from './http/edge.ts';
import { Readiness, type ComponentState } from './http/readiness.ts';
import { startIngestStack } from './ingest/ingest-stack.ts';
import { follow } from './journal/watermark.ts';
import { journalReadiness } from './ingest/journal-readiness.ts';
import { portProblem, startLocalBroker, type LocalBroker } from './kafka/local-broker.ts';
import type { Logger } from './log.ts';
import { createMetrics, zeroTenantSeries } from './metrics.ts';
import { migrate } from './outbox/migrate.ts';
import { openChecked } from './outbox/open-checked.ts';
import { OutboxGauges } from './outbox/outbox-gauges.ts';
import { pendingByTenant } from './outbox/repository.ts';
import { Backlog } from './ingest/backlog.ts';
import { probeWritableDir } from './probes.ts';
import { startProcessing, type Processing } from './processor/processing.ts';
import { TenantControls } from './processor/tenant-controls.ts';
import { loadTenantsFile, NO_TENANTS_FILE, Tenants } from './tenants.ts';

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
 * The composition root of `serve`: ingest, journal, outbox and processor in one process (`ingest`:
 * the same without the processor, which then runs elsewhere as `process`). Parts are built in
 * dependency order and closed in reverse; the local broker and the embedded database, the slow
 * ones, start side by side.
 */
export async function serve(config: Config, log: Logger, opts: { processor?: boolean } = {}): Promise<Running> {
  const started = performance.now();
  const timings: Record<string, number> = {};
  const timed = async <T>(part: string, p: Promise<T>): Promise<T> => {
    const t = performance.now();
    const value = await p;
    timings[`${part}_ms`] = Math.round(performance.now() - t);
    return value;
  };
  const withProcessor = opts.processor ?? true;
  // Read before anything starts: a bad tenants file or certificate stops sluice like a bad variable does.
  if (config.tls !== undefined) readTls(config.tls);
  const tenants = new Tenants(config.tenantsFile === undefined ? NO_TENANTS_FILE : loadTenantsFile(config.tenantsFile), log, { metricTenants: config.metricTenants });
  const metrics = createMetrics();
  zeroTenantSeries(metrics, tenants.configured);
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
    // Checked first: an unwritable journal is found in milliseconds, not after the broker started.
    const journalDir = probeWritableDir('SLUICE_JOURNAL_DIR', join(config.journal.dir, config.nodeId));
    if (!journalDir.ok) throw new SluiceError('journal_unavailable', journalDir.detail);

    const ownBroker = config.kafka.brokers === undefined && withProcessor;
    if (ownBroker) {
      // Known at once; the broker itself takes seconds and is waited for in the background.
      const problem = await portProblem(config.kafka.localPort);
      if (problem !== undefined) throw localBrokerError(config, problem);
    }
    let stopping = false;
    // The local broker starts beside the database; ingest does not wait for it, the processor does.
    const brokerStart = ownBroker ? timed('kafka_local', startOwnBroker(config, log)) : undefined;
    if (brokerStart !== undefined) {
      brokerStart.catch(() => {});
      closers.push({ name: 'kafka-local', close: async () => (await brokerStart.catch(() => undefined))?.stop() });
    }
    const database = await timed('database', openChecked(config, log));
    closers.push({ name: 'database', close: () => database.close() });
    await timed('migrate', migrate(database.sql, log));

    let processing: Processing | undefined;
    const startProcessor = async (brokers: string[]): Promise<void> => {
      const started = await startProcessing({ config, db: database, brokers, tenants, controls, metrics, log });
      processing = started;
      closers.push({ name: 'processor', close: () => started.close() });
    };
    if (config.kafka.brokers !== undefined && withProcessor) await startProcessor(config.kafka.brokers);
    const wakeProcessor = (): void => processing?.processor.wake();
    const gauges = new OutboxGauges(database.sql, tenants, metrics);

    const backlog = new Backlog({ pending: () => pendingByTenant(database.sql), tenants, metrics, log, refreshMs: 1_000 });
    await backlog.start();
    closers.push({ name: 'backlog', close: async () => backlog.stop() });

    const ingest = await timed('journal', startIngestStack({ config, sql: database.sql, log, metrics }));
    // Rows that entered the outbox (either way, also while ingest closes) are published at once, not at the next poll.
    const ingestClosed = new AbortController();
    follow(ingest.progress.entered, ingestClosed.signal, wakeProcessor);
    closers.push({ name: 'ingest-follow', close: async () => ingestClosed.abort() });
    closers.push({ name: 'ingest', close: () => ingest.close() });
    const { writePath, journal } = ingest;

    // An ingest node is ready when it can take a write and make it durable in its mode: the journal
    // always, the outbox in sync mode, room below SLUICE_MAX_UNFORWARDED otherwise. Kafka is the
    // processor's business: reported, never a reason to turn writes away.
    const readiness = new Readiness()
      .add('journal', true, () => journalReadiness(journal.nodeDir, journal.failure, config.http.maxBodyBytes))
      // Acknowledged records are in no file: the node stays out of rotation until a person has looked.
      .add('journal_integrity', true, () =>
        journal.integrity.incidents === 0 ? { ok: true } : { ok: false, detail: journal.integrity.describe() ?? '' },
      )
      .add('outbox', config.writeMode === 'sync', async () => {
        await database.sql`SELECT 1`;
        return { ok: true };
      })
      .add('forwarder', true, () => forwarderState(ingest.forwarder));
    if (config.writeMode !== 'sync') {
      readiness.add('backlog', true, () => {
        const refusal = writePath.refusal;
        return refusal === undefined ? { ok: true } : { ok: false, detail: refusal };
      });
    }
    if (withProcessor) {
      readiness.add('kafka', false, () => processing?.kafkaReadiness() ?? { ok: false, detail: `the local Kafka broker on 127.0.0.1:${config.kafka.localPort} is starting` });
    }

    let draining = false;
    const app = createApp({
      log,
      metrics,
      write: async (envelopes) => {
        await backlog.admit(envelopes, (es) => writePath.holds(es));
        const results = await writePath.write(envelopes);
        for (const r of results) {
          if (!r.duplicate) backlog.accepted(r.tenant_id, 1);
          // A tenant that wrote here reports pending 0 once drained, rather than vanishing from /metrics.
          gauges.saw(r.tenant_id);
        }
        return results;
      },
      maxBodyBytes: config.http.maxBodyBytes,
      maxBatchLines: config.ingest.maxBatchLines,
      maxJsonDepth: config.ingest.maxJsonDepth,
      maxLineBytes: config.ingest.maxLineBytes,
      progressTopic: config.processor.progressTopic,
      defaultTopic: config.kafka.topic,
      tenants,
      admin:
        config.adminToken === undefined
          ? undefined
          : { token: config.adminToken, sql: database.sql, controls, wake: wakeProcessor },
      draining: () => draining,
      readiness,
      beforeScrape: async () => {
        metrics.forwarderLag.set(ingest.progress.unforwarded);
        metrics.forwarderFailingSeconds.set(ingest.forwarder.failingMs() / 1000);
        await gauges.forScrape((err) => log.warn('outbox gauges not refreshed', { error: describeError(err) }));
      },
    });

    const server = listen({
      host: config.http.host,
      port: config.http.port,
      tls: config.tls,
      fetch: edgeFetch(app.fetch),
      // Our own reader answers every oversize body with sluice's JSON 413 (a declared length before
      // reading anything, a chunked one as soon as it passes the limit); Bun's own limit would
      // answer first with an empty 413, so it is out of the way.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      log,
    });
    closers.push({ name: 'http', close: () => server.stop() });
    timings.total_ms = Math.round(performance.now() - started);
    log.info('sluice listening', { url: server.url, node_id: config.nodeId, write_mode: config.writeMode, database: database.kind, tls: config.tls !== undefined, ...timings });
    brokerStart?.then(
      (own) => {
        if (stopping) return;
        log.info('local kafka ready', { bootstrap: own.bootstrap, kafka_local_ms: timings.kafka_local_ms, since_start_ms: Math.round(performance.now() - started) });
        startProcessor([own.bootstrap]).catch((err: unknown) => {
          if (!stopping) fail(`the processor did not start: ${describeError(err)}`);
        });
        // Whatever holds the port after the broker died is not ours: stop rather than publish to it.
        void own.exited.then((code) => {
          if (!stopping) fail(`the local Kafka broker exited (code ${code}); see ${join(own.dataDir, 'broker.log')}`);
        });
      },
      (err: unknown) => {
        if (!stopping) fail(localBrokerError(config, err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err)).message);
      },
    );

    let shutdown: Promise<void> | undefined;
    return {
      url: server.url,
      failed,
      reload() {
        const reloaded = tenants.reload();
        if (reloaded) zeroTenantSeries(metrics, tenants.configured);
        const tls = server.reloadTls();
        return reloaded || tls;
      },
      shutdown(reason) {
        shutdown ??= (async () => {
          log.info('shutting down', { reason, in_flight: writePath.inFlight });
          draining = true;
          stopping = true;
          await closeAll();
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

async function startOwnBroker(config: Config, log: Logger): Promise<LocalBroker> {
  log.info('KAFKA_BROKERS not set: starting a local Kafka broker', { port: config.kafka.localPort });
  return startLocalBroker({ dataDir: join(config.db.dataDir, 'kafka'), port: config.kafka.localPort, fastStart: true });
}

/** Why the local broker cannot serve, naming SLUICE_KAFKA_LOCAL_PORT and the ways out: never somebody else's broker. */
function localBrokerError(config: Config, why: string): SluiceError {
  return new SluiceError(
    'kafka_unavailable',
    `SLUICE_KAFKA_LOCAL_PORT ${config.kafka.localPort}: the local Kafka broker did not start: ${why}: free the port or set SLUICE_KAFKA_LOCAL_PORT to another one, or set KAFKA_BROKERS to use a broker you run`,
  );
}

/** Past this long failing without a break, the forwarder makes the instance not ready: it is stuck. */
const FORWARDER_STUCK_MS = 30_000;

function forwarderState(forwarder: { failingMs(): number; lastError: string | undefined }): ComponentState {
  const failing = forwarder.failingMs();
  if (failing < FORWARDER_STUCK_MS) return { ok: true };
  return { ok: false, detail: `failing for ${Math.round(failing / 1000)} s: ${forwarder.lastError ?? 'unknown error'}` };
}
