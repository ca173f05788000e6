import { createHash, timingSafeEqual } from 'node:crypto';

export function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/**
 * Whether a presented secret equals the expected one. Comparing digests keeps the comparison
 * constant-time even when the lengths differ (timingSafeEqual alone throws on unequal lengths).
 */
export function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}

/** Token digests (`sha256:<hex>`, as the tenants file stores them) mapped to their tenants. */
export class TokenIndex {
  #entries: { digest: Buffer; tenant: string }[] = [];

  constructor(tenants: ReadonlyMap<string, { tokens: readonly string[] }>) {
    for (const [tenant, { tokens }] of tenants) {
      for (const token of tokens) this.#entries.push({ digest: Buffer.from(token.slice('sha256:'.length), 'hex'), tenant });
    }
  }

  /**
   * The tenant a bearer token belongs to. Every entry is compared, with no early exit, so the time
   * taken tells a caller neither whether nor where the token matched.
   */
  tenantOf(token: string): string | undefined {
    const digest = sha256(token);
    let found: string | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.tenant;
    }
    return found;
  }
}
