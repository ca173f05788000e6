import { isTenantId, tenantIdSchema } from '../core/identifiers.ts';
import { validated } from './validated.ts';

export interface TenantClaim {
  source: string;
  tenant: string;
}

/** Tenant claims carried by request headers (X-Tenant-Id, alias X-Soma-Tenant). */
export function headerClaims(headers: Headers): TenantClaim[] {
  const claims: TenantClaim[] = [];
  for (const name of ['X-Tenant-Id', 'X-Soma-Tenant']) {
    const value = headers.get(name);
    if (value === null) continue;
    // The schema only for a bad value: its issue is the answer.
    if (!isTenantId(value)) validated(tenantIdSchema, value, name, `header ${name} is not a valid tenant id`);
    claims.push({ source: `header ${name}`, tenant: value });
  }
  return claims;
}

/** Tenant claims carried by an event body: `tenant_id`, or the tenant part of `namespace`. */
export function bodyClaims(event: { tenant_id?: string | undefined; namespace?: string | undefined }): TenantClaim[] {
  const claims: TenantClaim[] = [];
  if (event.tenant_id !== undefined) claims.push({ source: 'body tenant_id', tenant: event.tenant_id });
  if (event.namespace !== undefined) {
    claims.push({ source: 'body namespace', tenant: event.namespace.slice(0, event.namespace.indexOf(':')) });
  }
  return claims;
}

/**
 * Open mode (no tenants file): the tenant is whatever the request claims, and every claim must agree.
 * Returns an error message instead of throwing so batch parsing can report it per line.
 */
export function resolveOpenTenant(claims: TenantClaim[]): { tenant: string } | { error: string } {
  const first = claims[0];
  if (first === undefined) {
    return { error: 'no tenant: send X-Tenant-Id, or tenant_id or namespace (tenant:namespace) in the body' };
  }
  const other = claims.find((c) => c.tenant !== first.tenant);
  if (other !== undefined) {
    return { error: `conflicting tenants: ${first.source} says "${first.tenant}", ${other.source} says "${other.tenant}"` };
  }
  return { tenant: first.tenant };
}

/**
 * Authenticated mode: the tenant is the token's. Claims are optional, but one naming another tenant
 * is refused (403) rather than ignored, so a misrouted client finds out.
 */
export function claimMismatch(tokenTenant: string, claims: TenantClaim[]): string | undefined {
  const other = claims.find((c) => c.tenant !== tokenTenant);
  if (other === undefined) return undefined;
  return `${other.source} says "${other.tenant}", but the token belongs to "${tokenTenant}"`;
}
