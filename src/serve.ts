import { join } from 'node:path';
import type { Config } from './config.ts';
import { describeError } from './errors.ts';
import { createApp, type ComponentState } from './http/app.ts';
import { edgeFetch } from './http/edge.ts';
import { startIngestStack } from './ingest/ingest-stack.ts';
import { journalReadiness } from './ingest/journal-readiness.ts';
import { startLocalBroker, type LocalBroker } from './kafka/local-broker.ts';
import type { Logger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { openDatabase } from './outbox/db.ts';
import { migrate } from './outbox/migrate.ts';
import { OutboxGauges } from './outbox/outbox-gauges.ts';
import { pendingByTenant } from './outbox/repository.ts';
import { Backlog } from './ingest/backlog.ts';
import { startProcessing } from './processor/processing.ts';
import { TenantControls } from './processor/tenant-controls.ts';
import { loadTenantsFile, NO_TENANTS_FILE, Tenants } from './tenants.ts';

export interface Running {
  readonly url: string;
  /** Re-reads the tenants file (SIGHUP); a bad file is reported and the one in force kept. */
  reloadTenants(): boolean;
  /** Graceful stop: refuse new writes, drain, flush, close everything. Safe to call twice. */
  shutdown(reason: string): Promise<void>;
}

/**
 * The composition root of `serve`: ingest, journal, outbox and processor in one process (`ingest`:
 * the same without the processor, which then runs elsewhere as `process`). Parts are built in
 * dependency order and closed in reverse.
 */
export async function serve(config: Config, log: Logger, opts: { processor?: boolean } = {}): Promise<Running> {
  const withProcessor = opts.processor ?? true;
  // Parsed before anything starts: a bad tenants file stops sluice like a bad variable does.
  const tenants = new Tenants(config.tenantsFile === undefined ? NO_TENANTS_FILE : loadTenantsFile(config.tenantsFile), log, { metricTenants: config.metricTenants });
  const metrics = createMetrics();
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

  try {
    let brokers = config.kafka.brokers;
    if (brokers === undefined && withProcessor) {
      log.info('KAFKA_BROKERS not set: starting a local Kafka broker');
      const broker: LocalBroker = await startLocalBroker({
        dataDir: join(config.db.dataDir, 'kafka'),
        port: config.kafka.localPort,
      });
      closers.push({ name: 'kafka-local', close: () => broker.stop() });
      brokers = [broker.bootstrap];
      log.info('local kafka ready', { bootstrap: broker.bootstrap });
    }

    const db = await openDatabase(config.db, log);
    closers.push({ name: 'database', close: () => db.close() });
    await migrate(db.sql, log);

    const processing = brokers !== undefined && withProcessor ? await startProcessing({ config, db, brokers, tenants, controls, metrics, log }) : undefined;
    if (processing !== undefined) closers.push({ name: 'processor', close: () => processing.close() });
    const wakeProcessor = (): void => processing?.processor.wake();
    const gauges = new OutboxGauges(db.sql, tenants, metrics);

    const backlog = new Backlog({ pending: () => pendingByTenant(db.sql), tenants, metrics, log, refreshMs: 1_000 });
    await backlog.start();
    closers.push({ name: 'backlog', close: async () => backlog.stop() });

    const ingest = await startIngestStack({ config, sql: db.sql, log, metrics, onCommitted: wakeProcessor });
    closers.push({ name: 'ingest', close: () => ingest.close() });
    const { writePath, journal } = ingest;

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
      defaultTopic: config.kafka.topic,
      progressTopic: config.processor.progressTopic,
      tenants,
      admin:
        config.adminToken === undefined
          ? undefined
          : { token: config.adminToken, sql: db.sql, controls, wake: wakeProcessor },
      draining: () => draining,
      readiness: async () => {
        const [outbox, kafka, journalState] = await Promise.all([
          withTimeout(db.sql`SELECT 1`.then(() => true), 2_000),
          processing?.publishing.reachable(2_000),
          journalReadiness(journal.nodeDir, journal.failure, config.http.maxBodyBytes),
        ]);
        const states: Record<string, ComponentState> = {
          journal: journalState,
          // Acknowledged records are in no file: the node stays out of rotation until a person has looked.
          journal_integrity: journal.integrity.incidents === 0 ? { ok: true } : { ok: false, detail: journal.integrity.describe() ?? '' },
          outbox: outbox ? { ok: true } : { ok: false, detail: 'database did not answer within 2s' },
          forwarder: forwarderState(ingest.forwarder),
        };
        const refusal = writePath.refusal;
        if (config.writeMode !== 'sync') states.backlog = refusal === undefined ? { ok: true } : { ok: false, detail: refusal };
        // Only a process that publishes depends on Kafka.
        if (processing !== undefined) {
          states.kafka = kafka === true ? { ok: true } : { ok: false, detail: processing.processor.lastError ?? 'no broker answered within 2s' };
        }
        return states;
      },
      beforeScrape: async () => {
        await gauges.forScrape((err) => log.warn('outbox gauges not refreshed', { error: describeError(err) }));
        metrics.forwarderLag.set(ingest.forwarderLag());
        metrics.forwarderFailingSeconds.set(ingest.forwarder.failingMs() / 1000);
      },
    });

    const server = Bun.serve({
      hostname: config.http.host,
      port: config.http.port,
      fetch: edgeFetch(app.fetch),
      // Our own reader answers every oversize body with sluice's JSON 413 (a declared length before
      // reading anything, a chunked one as soon as it passes the limit); Bun's own limit would
      // answer first with an empty 413, so it is out of the way.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    });
    closers.push({ name: 'http', close: () => server.stop() });
    const url = `http://${config.http.host}:${server.port}`;
    log.info('sluice listening', { url, node_id: config.nodeId, write_mode: config.writeMode, database: db.kind });

    let stopping: Promise<void> | undefined;
    return {
      url,
      reloadTenants: () => tenants.reload(),
      shutdown(reason) {
        stopping ??= (async () => {
          log.info('shutting down', { reason, in_flight: writePath.inFlight });
          draining = true;
          await closeAll();
          log.info('shutdown complete');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Past this long failing without a break, the forwarder makes the instance not ready: it is stuck. */
const FORWARDER_STUCK_MS = 30_000;

function forwarderState(forwarder: { failingMs(): number; lastError: string | undefined }): ComponentState {
  const failing = forwarder.failingMs();
  if (failing < FORWARDER_STUCK_MS) return { ok: true };
  return { ok: false, detail: `failing for ${Math.round(failing / 1000)} s: ${forwarder.lastError ?? 'unknown error'}` };
}

async function withTimeout(p: Promise<boolean>, ms: number): Promise<boolean> {
  const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref());
  return Promise.race([p.catch(() => false), timeout]);
}
