export const DEFAULT_METRIC_TENANTS = 1_000;

// The buckets start with `~`, which no tenant id may contain (A-Z a-z 0-9 . _ -): a tenant named
// `other` or `multiple` gets its own series, never one of these.
/** The label every tenant past the cap (and, with a tenants file, every tenant the file does not name) is counted under. */
export const OTHER_TENANTS = '~other';
/** The ingest request label when no tenant could be told (refused before one was read). */
export const UNKNOWN_TENANT = '~unknown';
/** The ingest request label for a batch of more than one tenant. */
export const MIXED_TENANTS = '~multiple';

/**
 * Caps the distinct values of the `tenant` label (SLUICE_METRIC_TENANTS): the first `cap` tenants
 * that sluice reports on get a label of their own, for as long as the process runs; every later one
 * is summed under `~other`. A label never changes once given, so no counter of a named tenant jumps;
 * the cost is bounded — about 8 ingest series a named tenant, plus 3 outbox gauges and up to 6
 * processor series — whatever the number of tenants.
 */
export class TenantLabels {
  #named = new Set<string>();
  #cap: number;

  constructor(cap: number) {
    this.#cap = cap;
  }

  label(tenant: string): string {
    if (this.#named.has(tenant)) return tenant;
    if (this.#named.size >= this.#cap) return OTHER_TENANTS;
    this.#named.add(tenant);
    return tenant;
  }
}
