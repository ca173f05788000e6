import { Hono } from 'hono';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Outbox } from '../outbox/outbox.ts';
import type { TenantSnapshot } from '../processor/tenant-controls.ts';
import type { Tenants } from '../tenants.ts';
import { readAdminBody, replayIdsSchema, replayTenantSchema } from './admin-bodies.ts';
import { adminAudit, adminAuth, type AdminEnv } from './admin-middleware.ts';
import { tenantIdSchema } from '../core/identifiers.ts';
import { validated } from './validated.ts';

export interface AdminDeps {
  /** SLUICE_ADMIN_TOKEN. */
  token: string;
  outbox: Outbox;
  /**
   * The breakers and quotas of the node's processor (TenantControls.snapshots), in this process or in
   * the node's processor process.
   */
  controls(tenants: string[], reset?: string): Promise<Record<string, TenantSnapshot>>;
  /** Tells the processor that re-queued rows wait. */
  wake(): void;
}

/** What a tenant missing from the processor's answer shows (the processor answers for every one asked). */
const UNKNOWN: TenantSnapshot = { breaker: 'closed', tokens: 0 };

/** The admin API, mounted under /admin. */
export function createAdminApp(deps: AdminDeps, shared: { log: Logger; metrics: Metrics; tenants: Tenants }): Hono<AdminEnv> {
  const { outbox, controls } = deps;
  const { metrics, tenants } = shared;
  const admin = new Hono<AdminEnv>();
  admin.use('*', adminAudit(shared.log, metrics));
  admin.use('*', adminAuth(deps.token));

  admin.post('/outbox/replay', async function replayIds(c) {
    const { ids } = await readAdminBody(c.req.raw, replayIdsSchema);
    const unique = [...new Set(ids)];
    const rows = await outbox.requeueIds(unique);
    const found = new Set(rows.map((r) => r.id));
    const missing = unique.filter((id) => !found.has(id));
    for (const r of rows) metrics.replayed.inc({ tenant: tenants.metricLabel(r.tenant_id), kind: 'ids' });
    if (rows.length > 0) deps.wake();
    c.set('audit', { requested: unique.length, requeued: rows.length, missing: missing.length });
    return c.json({ requeued: rows.length, missing });
  });

  admin.post('/outbox/replay/tenant', async function replayTenant(c) {
    const body = await readAdminBody(c.req.raw, replayTenantSchema);
    const result = await outbox.requeueTenant({
      tenantId: body.tenant_id,
      since: body.since,
      until: body.until,
      statuses: body.status,
      limit: body.limit,
      dryRun: body.dry_run,
    });
    if (result.requeued > 0) {
      metrics.replayed.inc({ tenant: tenants.metricLabel(body.tenant_id), kind: 'tenant' }, result.requeued);
      deps.wake();
    }
    c.set('audit', { tenant_id: body.tenant_id, dry_run: body.dry_run, ...result });
    return c.json(result);
  });

  admin.get('/tenants', async function listTenants(c) {
    const counts = await outbox.statusCountsByTenant();
    const configured = new Set(tenants.configured);
    const ids = [...new Set([...configured, ...counts.keys()])].sort();
    const snapshots = await controls(ids);
    const list = ids.map((id) => {
      const { breaker, tokens } = snapshots[id] ?? UNKNOWN;
      return { tenant_id: id, configured: configured.has(id), ...(counts.get(id) ?? { pending: 0, sent: 0, dead: 0 }), breaker, quota_tokens: tokens };
    });
    c.set('audit', { tenants: list.length });
    return c.json({ tenants: list });
  });

  admin.post('/tenants/:id/breaker/reset', async function resetBreaker(c) {
    const tenant = validated(tenantIdSchema.min(1), c.req.param('id'), 'id', 'not a valid tenant id');
    // Known: named by the tenants file, or with records in the outbox. Anything else is a typo that
    // would otherwise answer 200 and create a breaker for nobody.
    if (!tenants.configured.includes(tenant) && !(await outbox.tenantHasRows(tenant))) {
      throw new SluiceError('not_found', `unknown tenant ${tenant}: not in the tenants file and no records in the outbox`);
    }
    const { breaker, tokens } = (await controls([tenant], tenant))[tenant] ?? UNKNOWN;
    c.set('audit', { tenant_id: tenant, breaker });
    return c.json({ tenant_id: tenant, breaker, quota_tokens: tokens });
  });

  return admin;
}
