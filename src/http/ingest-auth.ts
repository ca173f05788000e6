import { SluiceError } from '../errors.ts';
import type { Tenants } from '../tenants.ts';
import { bearerToken } from './bearer.ts';

/**
 * The tenant an ingest request is authenticated as: the owner of its bearer token when a tenants
 * file is in force (401 otherwise); undefined in open mode, where the request's claims decide.
 */
export function authenticateIngest(headers: Headers, tenants: Tenants): string | undefined {
  if (!tenants.authenticated) return undefined;
  const tenant = tenants.tenantOf(bearerToken(headers));
  if (tenant === undefined) throw new SluiceError('unauthorized', 'unknown token');
  return tenant;
}
