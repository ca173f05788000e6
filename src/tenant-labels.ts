export const DEFAULT_METRIC_TENANTS = 1_000;

/** The label every tenant past the cap (and, with a tenants file, every tenant the file does not name) is counted under. */
export const OTHER_TENANTS = '_other';

/**
 * Caps the distinct values of the `tenant` label (SLUICE_METRIC_TENANTS): the first `cap` tenants
 * that sluice reports on get a label of their own, for as long as the process runs; every later one
 * is summed under `_other`. A label never changes once given, so no counter of a named tenant jumps;
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
