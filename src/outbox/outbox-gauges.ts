import type { Metrics } from '../metrics.ts';
import type { Tenants } from '../tenants.ts';
import type { Outbox } from './outbox.ts';

/** How long the first scrape waits for the counts before it renders without them. */
export const FIRST_SCRAPE_WAIT_MS = 1_000;

/**
 * Refreshes the per-tenant outbox gauges (pending, dead, oldest pending) before a scrape. The tenants
 * file's tenants, and tenants seen once, report 0 when nothing waits rather than vanishing; tenants
 * outside the tenants file are summed into their folded label.
 */
export class OutboxGauges {
  #outbox: Outbox;
  #tenants: Tenants;
  #metrics: Metrics;
  #known = new Set<string>();
  #firstScrapeWaited = false;
  #refreshing: Promise<void> | undefined;

  constructor(outbox: Outbox, tenants: Tenants, metrics: Metrics) {
    this.#outbox = outbox;
    this.#tenants = tenants;
    this.#metrics = metrics;
  }

  /** A tenant that wrote here: reported from now on, with 0 once it has nothing waiting. */
  saw(tenant: string): void {
    // Tenants without a label of their own are reported through the outbox's counts alone, so an open
    // deployment does not remember every tenant name a client ever sent.
    if (this.#tenants.currentLabel(tenant) === tenant) this.#known.add(tenant);
  }

  /**
   * For a scrape: later ones render what the previous refresh found and start the next, so a scrape
   * never waits for Postgres and the gauges are at most one scrape interval old; the first waits for
   * the counts, FIRST_SCRAPE_WAIT_MS at most. Refresh failures go to `onError`; it never throws: a
   * database that does not answer (an outage, a hang) must not cost the scrape its other figures —
   * with several workers, a first scrape waiting on it passed the supervisor's deadline (503).
   */
  async forScrape(onError: (err: unknown) => void): Promise<void> {
    const refreshing = (this.#refreshing ??= this.refresh()
      .catch(onError)
      .finally(() => {
        this.#refreshing = undefined;
      }));
    if (this.#firstScrapeWaited) return;
    this.#firstScrapeWaited = true;
    let waited: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([refreshing, new Promise<void>((resolve) => (waited = setTimeout(resolve, FIRST_SCRAPE_WAIT_MS)))]);
    clearTimeout(waited);
  }

  async refresh(): Promise<void> {
    const stats = await this.#outbox.tenantStats();
    // The file's labelled tenants are reported from the start, at 0, like their counters: a dashboard
    // that lists tenants from these gauges shows one that has not written yet (also after a reload).
    for (const tenant of this.#tenants.labelledConfigured()) this.saw(tenant);
    // A tenant whose label went to a busier one is reported under `~other` and forgotten here.
    for (const tenant of this.#known) if (this.#tenants.currentLabel(tenant) !== tenant) this.#known.delete(tenant);
    for (const tenant of stats.keys()) this.saw(tenant);
    const byLabel = new Map<string, { pending: number; dead: number; oldest: number }>();
    for (const tenant of new Set([...this.#known, ...stats.keys()])) {
      const s = stats.get(tenant);
      const label = this.#tenants.currentLabel(tenant);
      const sum = byLabel.get(label) ?? { pending: 0, dead: 0, oldest: 0 };
      sum.pending += s?.pending ?? 0;
      sum.dead += s?.dead ?? 0;
      sum.oldest = Math.max(sum.oldest, s?.oldestPendingSeconds ?? 0);
      byLabel.set(label, sum);
    }
    for (const [tenant, s] of byLabel) {
      this.#metrics.outboxPending.set({ tenant }, s.pending);
      this.#metrics.outboxDead.set({ tenant }, s.dead);
      this.#metrics.outboxOldestPending.set({ tenant }, s.oldest);
    }
  }
}
