import { Hono } from 'hono';
import type { Config } from './config.ts';
import { ConfigError, describeError, SluiceError } from './errors.ts';
import { errorResponse } from './http/error-response.ts';
import { listen, readTls } from './http/listener.ts';
import { addOpsRoutes } from './http/ops-routes.ts';
import { Readiness } from './http/readiness.ts';
import type { Logger } from './log.ts';
import { zeroTenantSeries } from './metrics.ts';
import { migrate } from './outbox/migrate.ts';
import { OutboxGauges } from './outbox/outbox-gauges.ts';
import { startProcessing } from './processor/processing.ts';
import { TenantControls } from './processor/tenant-controls.ts';
import { openChecked } from './outbox/open-checked.ts';
import type { Running } from './serve.ts';
import { openTenantMetrics } from './tenant-metrics.ts';

/**
 * The composition root of `process`: a processor instance alone, to scale publishing out beside
 * `serve` or `ingest` instances. It shares the outbox, so it needs a real Postgres and a real Kafka
 * cluster; it serves /healthz, /readyz and /metrics on SLUICE_HOST:SLUICE_PORT, ready when both answer.
 */
export async function runProcessor(config: Config, log: Logger): Promise<Running> {
  const brokers = config.kafka.brokers;
  const missing = [
    ...(config.db.url === undefined ? [{ path: 'DATABASE_URL', message: 'DATABASE_URL must be set for process: the processor shares the outbox with other instances, so it needs a real Postgres' }] : []),
    ...(brokers === undefined ? [{ path: 'KAFKA_BROKERS', message: 'KAFKA_BROKERS must be set for process: it publishes to a Kafka cluster you run (only serve starts a local broker)' }] : []),
  ];
  if (missing.length > 0 || brokers === undefined) {
    throw new ConfigError(`invalid configuration: ${missing.map((m) => m.message).join('; ')}`, missing);
  }
  if (config.tls !== undefined) readTls(config.tls);
  const { tenants, metrics } = openTenantMetrics(config, log);
  const controls = new TenantControls(tenants, metrics, log);
  const db = await openChecked(config, log);
  try {
    await migrate(db.sql, log);
  } catch (err) {
    await db.close();
    throw err;
  }
  const processing = await startProcessing({ config, db, brokers, tenants, controls, metrics, log });
  const gauges = new OutboxGauges(db.sql, tenants, metrics);
  const readiness = new Readiness()
    .add('outbox', true, async () => {
      await db.sql`SELECT 1`;
      return { ok: true };
    })
    .add('kafka', true, () => processing.kafkaReadiness());
  let draining = false;
  const app = new Hono();
  app.onError((err, c) => errorResponse(c, err, log));
  app.notFound((c) => errorResponse(c, new SluiceError('not_found', `no route for ${c.req.method} ${c.req.path}`), log));
  addOpsRoutes(app, {
    log,
    metrics,
    readiness,
    draining: () => draining,
    beforeScrape: () => gauges.forScrape((err) => log.warn('outbox gauges not refreshed', { error: describeError(err) })),
    health: () => ({ partitions_owned: processing.processor.owned.size }),
  });
  let server;
  try {
    server = listen({ host: config.http.host, port: config.http.port, tls: config.tls, fetch: app.fetch, maxRequestBodySize: 64 * 1024, log });
  } catch (err) {
    await processing.close();
    await db.close();
    throw err;
  }
  const listener = server;
  log.info('sluice processor running', { url: listener.url, node_id: config.nodeId, guarantee: config.processor.guarantee });
  let stopping: Promise<void> | undefined;
  return {
    url: listener.url,
    failed: new Promise<string>(() => {}),
    reload() {
      const reloaded = tenants.reload();
      if (reloaded) zeroTenantSeries(metrics, tenants.labelledConfigured());
      return listener.reloadTls() || reloaded;
    },
    shutdown(reason) {
      stopping ??= (async () => {
        log.info('shutting down', { reason });
        draining = true;
        await listener.stop();
        await processing.close();
        await db.close();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}
