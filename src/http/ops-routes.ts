import type { Env, Hono } from 'hono';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Readiness } from './readiness.ts';

export interface OpsDeps {
  log: Logger;
  metrics: Metrics;
  readiness: Readiness;
  /** True once shutdown began: /readyz answers 503 draining. */
  draining(): boolean;
  /** Runs before /metrics renders, to refresh gauges read from the outbox. */
  beforeScrape?(): Promise<void>;
  /** What /healthz adds to its `status: ok` (a processor: the partitions it owns). */
  health?(): Record<string, unknown>;
}

/** /healthz, /readyz and /metrics: the same routes on every role (serve, ingest, process). */
export function addOpsRoutes<E extends Env>(app: Hono<E>, deps: OpsDeps): void {
  app.get('/healthz', (c) => c.json({ status: 'ok', ...deps.health?.() }));

  app.get('/readyz', async function readyz(c) {
    const { ready, components } = await deps.readiness.report();
    const draining = deps.draining();
    const ok = ready && !draining;
    return c.json({ status: ok ? 'ready' : draining ? 'draining' : 'not_ready', components }, ok ? 200 : 503);
  });

  app.get('/metrics', async function scrape(c) {
    // Gauges read from the outbox stay at their last values when it does not answer; the rest is fresh.
    await deps.beforeScrape?.().catch((err: unknown) => deps.log.warn('outbox gauges not refreshed', { error: describeError(err) }));
    c.header('Content-Type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });
}
