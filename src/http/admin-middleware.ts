import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { SluiceError } from '../errors.ts';
import type { Fields, Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { sameSecret } from '../tenant-tokens.ts';
import { bearerToken } from './bearer.ts';
import { checkHeaderLimits } from './header-limits.ts';

/** What a handler adds to its call's audit line (counts, the tenant acted on). */
export type AdminEnv = { Variables: { audit: Fields } };

/**
 * One structured line per admin call, refused ones included, and the admin request counter. The
 * route is the matched pattern, not the path, so the counter's labels stay bounded.
 */
export function adminAudit(log: Logger, metrics: Metrics): MiddlewareHandler<AdminEnv> {
  return async function adminAudit(c, next) {
    await next();
    const route = routePath(c, -1);
    const status = c.res.status;
    metrics.adminRequests.inc({ route, status: String(status) });
    log.info('admin', { route, method: c.req.method, status, ...c.get('audit') });
  };
}

/** Admits only `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`, compared in constant time. */
export function adminAuth(token: string): MiddlewareHandler<AdminEnv> {
  return async function adminAuth(c, next) {
    checkHeaderLimits(c.req.raw.headers);
    if (!sameSecret(bearerToken(c.req.raw.headers), token)) throw new SluiceError('unauthorized', 'not the admin token');
    await next();
  };
}
