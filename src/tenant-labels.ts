export const DEFAULT_METRIC_TENANTS = 1_000;
export const DEFAULT_METRIC_TENANTS_WINDOW_MS = 600_000;

// The buckets start with `~`, which no tenant id may contain (A-Z a-z 0-9 . _ -): a tenant named
// `other` or `multiple` gets its own series, never one of these.
/** The label every tenant past the cap (and, with a tenants file, every tenant the file does not name) is counted under. */
export const OTHER_TENANTS = '~other';
/** The ingest request label when no tenant could be told (refused before one was read). */
export const UNKNOWN_TENANT = '~unknown';
/** The ingest request label for a batch of more than one tenant. */
export const MIXED_TENANTS = '~multiple';

export interface TenantLabelsOptions {
  cap: number;
  /** How long a window of activity is; labels change only when one ends. */
  windowMs?: number;
  now?: () => number;
}

/**
 * Caps the distinct values of the `tenant` label (SLUICE_METRIC_TENANTS) and gives them to the
 * busiest tenants. Until the cap is reached every tenant sluice reports on is named at once. After
 * that, activity (each metric update that names a tenant) is counted per window
 * (SLUICE_METRIC_TENANTS_WINDOW_MS) in a Misra–Gries summary of 2 × cap counters: constant memory,
 * amortised constant time per update, and every tenant with more than 1/(2 × cap + 1) of a window's
 * updates is sure to be in it. When a window ends its busiest unnamed tenants take the labels of the
 * quietest named ones, with churn bounded:
 * - labels change only at the first update after a window ends (which starts the next window),
 *   never between two scrapes inside one;
 * - a newcomer replaces a named tenant only when it was more than twice as busy in that window;
 * - a tenant promoted at the end of one window is not demoted at the end of the next;
 * - at most max(1, cap / 10) labels change per window.
 * A demoted tenant's series are dropped (`onDropped`), so the series never exceed the cap's, and its
 * later activity counts under `~other`; a promoted tenant's series start from 0.
 */
export class TenantLabels {
  #named = new Set<string>();
  /** Named at the last re-evaluation: safe from demotion at the next one. */
  #justPromoted = new Set<string>();
  #counts = new Map<string, number>();
  #cap: number;
  #windowMs: number;
  #now: () => number;
  /** The first update starts the first window. */
  #windowEnds = Number.NEGATIVE_INFINITY;
  #dropped: ((tenant: string) => void)[] = [];

  constructor(opts: TenantLabelsOptions) {
    this.#cap = opts.cap;
    this.#windowMs = opts.windowMs ?? DEFAULT_METRIC_TENANTS_WINDOW_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Called with each tenant whose label was taken away, to drop its series. */
  onDropped(listener: (tenant: string) => void): void {
    this.#dropped.push(listener);
  }

  /**
   * The label for a tenant, without counting it as activity (a free label is still given): for what
   * a scrape reads (the outbox gauges), which must not keep idle tenants named however often
   * Prometheus scrapes.
   */
  current(tenant: string): string {
    if (this.#named.has(tenant)) return tenant;
    if (this.#named.size >= this.#cap) return OTHER_TENANTS;
    this.#named.add(tenant);
    return tenant;
  }

  label(tenant: string): string {
    const now = this.#now();
    if (now >= this.#windowEnds) {
      // A window without any update has nothing to go by: the next one starts with this update.
      if (this.#counts.size > 0) this.#reevaluate();
      this.#windowEnds = now + this.#windowMs;
    }
    this.#count(tenant);
    return this.current(tenant);
  }

  #count(tenant: string): void {
    const c = this.#counts.get(tenant);
    if (c !== undefined) {
      this.#counts.set(tenant, c + 1);
      return;
    }
    if (this.#counts.size < 2 * this.#cap) {
      this.#counts.set(tenant, 1);
      return;
    }
    // Full: this update and one of every counter cancel out. Each such step removes 2 × cap + 1
    // updates from the summary, so their cost is bounded by the number of updates.
    for (const [t, n] of this.#counts) {
      if (n <= 1) this.#counts.delete(t);
      else this.#counts.set(t, n - 1);
    }
  }

  #reevaluate(): void {
    const activity = (t: string): number => this.#counts.get(t) ?? 0;
    const candidates = [...this.#counts].filter(([t]) => !this.#named.has(t)).sort((a, b) => b[1] - a[1]);
    const demotable = [...this.#named].filter((t) => !this.#justPromoted.has(t)).sort((a, b) => activity(a) - activity(b));
    const promoted = new Set<string>();
    const limit = Math.max(1, Math.floor(this.#cap / 10));
    for (const [tenant, n] of candidates) {
      if (promoted.size >= limit) break;
      if (this.#named.size < this.#cap) {
        this.#named.add(tenant);
        promoted.add(tenant);
        continue;
      }
      const weakest = demotable.shift();
      if (weakest === undefined || n <= 2 * activity(weakest)) break;
      this.#named.delete(weakest);
      this.#named.add(tenant);
      promoted.add(tenant);
      for (const listener of this.#dropped) listener(weakest);
    }
    this.#justPromoted = promoted;
    this.#counts.clear();
  }
}
