import type { Config } from './config.ts';
import { ConfigError, describeError } from './errors.ts';
import type { Logger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { openDatabase } from './outbox/db.ts';
import { migrate } from './outbox/migrate.ts';
import { OutboxGauges } from './outbox/outbox-gauges.ts';
import { startProcessing } from './processor/processing.ts';
import { TenantControls } from './processor/tenant-controls.ts';
import type { Running } from './serve.ts';
import { loadTenantsFile, NO_TENANTS_FILE, Tenants } from './tenants.ts';

/**
 * The composition root of `process`: a processor instance alone, to scale publishing out beside
 * `serve` or `ingest` instances. It shares the outbox, so it needs a real Postgres and a real Kafka
 * cluster; it serves /healthz and /metrics on SLUICE_HOST:SLUICE_PORT.
 */
export async function runProcessor(config: Config, log: Logger): Promise<Running> {
  const brokers = config.kafka.brokers;
  const missing = [
    ...(config.db.url === undefined ? ['DATABASE_URL'] : []),
    ...(brokers === undefined ? ['KAFKA_BROKERS'] : []),
  ];
  if (missing.length > 0 || brokers === undefined) {
    const message = `process shares the outbox and Kafka with other instances: set ${missing.join(' and ')}`;
    throw new ConfigError(`invalid configuration: ${message}`, missing.map((path) => ({ path, message })));
  }
  const tenants = new Tenants(config.tenantsFile === undefined ? NO_TENANTS_FILE : loadTenantsFile(config.tenantsFile), log);
  const metrics = createMetrics();
  const controls = new TenantControls(tenants, metrics, log);
  const db = await openDatabase(config.db, log);
  try {
    await migrate(db.sql, log);
  } catch (err) {
    await db.close();
    throw err;
  }
  const processing = await startProcessing({ config, db, brokers, tenants, controls, metrics, log });
  const gauges = new OutboxGauges(db.sql, tenants, metrics);
  const server = Bun.serve({
    hostname: config.http.host,
    port: config.http.port,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === '/healthz') return Response.json({ status: 'ok', partitions_owned: processing.processor.owned.size });
      if (path === '/metrics') {
        await gauges.refresh().catch((err: unknown) => log.warn('outbox gauges not refreshed', { error: describeError(err) }));
        return new Response(await metrics.registry.metrics(), { headers: { 'Content-Type': metrics.registry.contentType } });
      }
      return Response.json({ error: { code: 'not_found', message: `no route for ${req.method} ${path}` } }, { status: 404 });
    },
  });
  const url = `http://${config.http.host}:${server.port}`;
  log.info('sluice processor running', { url, node_id: config.nodeId, guarantee: config.processor.guarantee });
  let stopping: Promise<void> | undefined;
  return {
    url,
    reloadTenants: () => tenants.reload(),
    shutdown(reason) {
      stopping ??= (async () => {
        log.info('shutting down', { reason });
        await server.stop();
        await processing.close();
        await db.close();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}
