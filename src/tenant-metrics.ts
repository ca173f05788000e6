import type { Config } from './config.ts';
import { describeError } from './errors.ts';
import type { Logger } from './log.ts';
import { createMetrics, dropTenantSeries, zeroTenantSeries, type Metrics } from './metrics.ts';
import { loadTenantsFile, NO_TENANTS_FILE, type OwnTopics, Tenants } from './tenants.ts';

/**
 * The tenants (file or open mode) and the metrics registry, tied together: the file's tenants take
 * the free labels first, with their series at 0, and a tenant whose label goes to a busier one loses
 * its series.
 */
export function openTenantMetrics(config: Config, log: Logger): { tenants: Tenants; metrics: Metrics } {
  const tenants = new Tenants(config.tenantsFile === undefined ? NO_TENANTS_FILE : loadTenantsFile(config.tenantsFile, ownTopics(config)), log, {
    metricTenants: config.metricTenants,
    metricWindowMs: config.metricTenantsWindowMs,
  });
  const metrics = createMetrics();
  zeroTenantSeries(metrics, tenants.labelledConfigured());
  tenants.onLabelDropped((tenant) => {
    log.info('tenant metric label given to a busier tenant', { tenant });
    dropTenantSeries(metrics, tenant).catch((err: unknown) => log.warn('tenant series not dropped', { tenant, error: describeError(err) }));
  });
  return { tenants, metrics };
}

/** The topics of this deployment that a tenants file is checked against. */
export function ownTopics(config: Config): OwnTopics {
  return { progressTopic: config.processor.progressTopic, defaultTopic: config.kafka.topic };
}
