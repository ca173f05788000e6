import type { Config } from '../config.ts';
import { JournalMaintenance } from '../journal/maintenance.ts';
import { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { Forwarder } from './forwarder.ts';
import { OutboxProgress } from './outbox-progress.ts';
import { RecentKeys } from './recent-keys.ts';
import { startWritePath, type WritePath } from './write-path.ts';

export interface IngestStack {
  readonly writePath: WritePath;
  readonly journal: JournalWriter;
  readonly forwarder: Forwarder;
  /** Which journal seqs are in the outbox; `entered` moves whenever rows entered it. */
  readonly progress: OutboxProgress;
  /**
   * Shutdown began: writes waiting for the dedupe index's background read are answered
   * `shutting_down` now rather than when the read ends (it may take seconds).
   */
  stopWaiting(): void;
  /** Drains writes, stops forwarding and upkeep, flushes and closes the journal. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * The ingest pipeline of one node, built in the order its stages run: journal (with recovery,
 * rotation, gzip and retention), the record of what is in the outbox, the forwarder (journal →
 * outbox, following the journal's durable mark), and the write path of the configured mode with
 * what that mode runs beside it (see startWritePath). Each stage is given the ones before it; none is
 * wired back into an earlier one.
 */
export async function startIngestStack(opts: { config: Config; outbox: Outbox; log: Logger; metrics: Metrics }): Promise<IngestStack> {
  const { config, outbox, log, metrics } = opts;
  // Rows are placed by partition: refuse a count other than the outbox's before anything is written.
  await outbox.claim();
  const journal = await JournalWriter.open({ dir: config.journal.dir, nodeId: config.nodeId, segmentBytes: config.journal.segmentBytes, preallocate: config.journal.preallocate, log, metrics });
  const progress = new OutboxProgress(journal);
  const forwarder = new Forwarder({
    nodeId: config.nodeId,
    journal,
    progress,
    outbox,
    batchSize: config.forwarder.batchSize,
    lingerMs: config.forwarder.lingerMs,
    pollMs: config.processor.pollMs,
    log,
    metrics,
  });
  await forwarder.init();
  const recentKeys = new RecentKeys(config.forwarder.recentKeys, config.nodeId);
  const path = await startWritePath({
    mode: config.writeMode,
    nodeId: config.nodeId,
    journal,
    progress,
    outbox,
    forwarder,
    maxBatch: config.ingest.maxBatch,
    recentKeys,
    maxUnforwarded: config.forwarder.maxUnforwarded,
    outboxWaitMs: config.ingest.syncOutboxWaitMs,
    snapshotMs: config.forwarder.snapshotMs,
    log,
  });
  const { writePath } = path;
  forwarder.start();
  const upkeep = new JournalMaintenance({
    writer: journal,
    maxSegmentAgeMs: config.journal.maxSegmentAgeMs,
    retentionMs: config.journal.retentionMs,
    retentionBytes: config.journal.retentionBytes,
    intervalMs: config.journal.maintenanceMs,
    // What checkpoint.json has passed, not what is in the outbox: a restart starts from the file.
    forwardedThrough: () => forwarder.checkpointedThrough,
    log,
    metrics,
  });
  upkeep.start();

  let closing: Promise<void> | undefined;
  return {
    writePath,
    journal,
    forwarder,
    progress,
    stopWaiting() {
      path.closing();
    },
    close() {
      closing ??= (async () => {
        path.closing();
        await writePath.drain();
        await upkeep.stop();
        await journal.close();
        // The last fsynced lines are forwarded now if the outbox answers; otherwise at the next start.
        await forwarder.stop();
        await path.stop();
      })();
      return closing;
    },
  };
}
