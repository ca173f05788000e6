import type { Config } from '../config.ts';
import type { Watermark } from '../core/watermark.ts';
import type { Envelope } from '../core/record.ts';
import type { ComponentState } from '../core/component-state.ts';
import type { Readiness } from '../http/readiness.ts';
import { TenantPendingLimit } from '../ingest/tenant-pending.ts';
import { startIngestStack } from '../ingest/ingest-stack.ts';
import { journalReadiness } from '../ingest/journal-readiness.ts';
import type { HeldBody, WriteResult } from '../ingest/write-path.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Outbox } from '../outbox/outbox.ts';
import type { OutboxGauges } from '../outbox/outbox-gauges.ts';
import { outboxState } from '../probes.ts';
import type { Tenants } from '../tenants.ts';

export interface IngestRole {
  write(envelopes: Envelope[], body?: HeldBody): Promise<WriteResult[]>;
  inFlight(): number;
  /** Shutdown began: nothing waits for the dedupe index's background read any more. */
  stopWaiting(): void;
  /** Sets the forwarder gauges a scrape reports. */
  beforeScrape(): void;
  /** Moves whenever rows entered the outbox (either way, also while ingest closes): the processor follows it. */
  readonly entered: Watermark;
}

/** Past this long failing without a break, the forwarder is reported stuck (not ready in sync mode). */
const FORWARDER_STUCK_MS = 30_000;

/**
 * The ingest half of a node: backpressure, the journal with its forwarder and the write path, and
 * the readiness an ingest node answers with — ready when it can take a write and make it durable in
 * its mode: the journal always, the outbox in sync mode, room below SLUICE_MAX_UNFORWARDED otherwise.
 */
export async function startIngestRole(o: {
  config: Config;
  outbox: Outbox;
  tenants: Tenants;
  metrics: Metrics;
  log: Logger;
  gauges: OutboxGauges;
  readiness: Readiness;
  timed: <T>(part: string, p: Promise<T>) => Promise<T>;
  closers: { name: string; close: () => Promise<void> }[];
}): Promise<IngestRole> {
  const { config, outbox, tenants, metrics, log, gauges, readiness } = o;
  const pendingLimit = new TenantPendingLimit({ pending: () => outbox.pendingByTenant(), tenants, metrics, log, refreshMs: 1_000 });
  await pendingLimit.start();
  o.closers.push({ name: 'backlog', close: async () => pendingLimit.stop() });

  const ingest = await o.timed('journal', startIngestStack({ config, outbox, log, metrics }));
  o.closers.push({ name: 'ingest', close: () => ingest.close() });
  const { writePath, journal } = ingest;

  readiness
    .add('journal', true, () => journalReadiness(journal.nodeDir, journal.failure, config.http.maxBodyBytes))
    // Acknowledged records are in no file: the node stays out of rotation until a person has looked.
    .add('journal_integrity', true, () =>
      journal.integrity.incidents === 0 ? { ok: true } : { ok: false, detail: journal.integrity.describe() ?? '' },
    )
    .add('outbox', config.writeMode === 'sync', () => outboxState(() => outbox.ping(), config.db.url))
    // In sync mode a write needs the outbox, and so the forwarder for what was answered from the
    // journal. In fast_ack/background the journal makes it durable: a forwarder failing through a
    // database outage is shown, and the node leaves rotation only once it refuses writes (backlog).
    .add('forwarder', config.writeMode === 'sync', () => forwarderState(ingest.forwarder));
  if (config.writeMode !== 'sync') {
    readiness.add('backlog', true, () => {
      const refusal = writePath.refusal;
      return refusal === undefined ? { ok: true } : { ok: false, detail: refusal };
    });
  }

  return {
    async write(envelopes, body) {
      await pendingLimit.admit(envelopes, (es) => writePath.holds(es));
      let results: WriteResult[];
      try {
        results = await writePath.write(envelopes, body);
      } finally {
        pendingLimit.release(envelopes);
      }
      for (const r of results) {
        if (!r.duplicate) pendingLimit.accepted(r.tenant_id, 1);
        // A tenant that wrote here reports pending 0 once drained, rather than vanishing from /metrics.
        gauges.saw(r.tenant_id);
      }
      return results;
    },
    inFlight: () => writePath.inFlight,
    stopWaiting: () => ingest.stopWaiting(),
    entered: ingest.progress.entered,
    beforeScrape() {
      metrics.forwarderLag.set(ingest.progress.unforwarded);
      metrics.forwarderFailingSeconds.set(ingest.forwarder.failingMs() / 1000);
    },
  };
}

function forwarderState(forwarder: { failingMs(): number; lastError: string | undefined }): ComponentState {
  const failing = forwarder.failingMs();
  if (failing < FORWARDER_STUCK_MS) return { ok: true };
  return { ok: false, detail: `failing for ${Math.round(failing / 1000)} s: ${forwarder.lastError ?? 'unknown error'}` };
}
