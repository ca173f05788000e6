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

/**
 * Tokens that matched, remembered by their text: hashing and comparing every entry cost ~2% of a
 * single-event ingest's CPU, repeated for the same few tokens. Cleared when full (a bound, not a
 * working set: clients hold few tokens); each entry costs the token's text and its tenant's name.
 */
const MAX_KNOWN_TOKENS = 1024;

/** Token digests (`sha256:<hex>`, as the tenants file stores them) mapped to their tenants. */
export class TokenIndex {
  #entries: { digest: Buffer; tenant: string }[] = [];
  /**
   * Only tokens that matched: an unknown token always takes the constant-time path, so answering a
   * known one sooner tells a caller nothing the 401 or 2xx does not. A new index (a tenants file
   * reload) starts empty, so a removed token is refused at once.
   */
  #known = new Map<string, string>();

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
    const known = this.#known.get(token);
    if (known !== undefined) return known;
    const found = this.#match(token);
    if (found !== undefined) {
      if (this.#known.size >= MAX_KNOWN_TOKENS) this.#known.clear();
      this.#known.set(token, found);
    }
    return found;
  }

  #match(token: string): string | undefined {
    const digest = sha256(token);
    let found: string | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.tenant;
    }
    return found;
  }
}
