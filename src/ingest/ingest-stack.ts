import type { Config } from '../config.ts';
import { JournalMaintenance } from '../journal/maintenance.ts';
import { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Sql } from '../outbox/db.ts';
import { claimOutbox } from '../outbox/identity.ts';
import { Forwarder } from './forwarder.ts';
import { loadDedupeIndex, KeySnapshots } from './dedupe-start.ts';
import { RecentKeys } from './recent-keys.ts';
import { WritePath } from './write-path.ts';

export interface IngestStack {
  readonly writePath: WritePath;
  readonly journal: JournalWriter;
  readonly forwarder: Forwarder;
  /** Journal records written but not yet in the outbox. */
  forwarderLag(): number;
  /** Drains writes, stops forwarding and upkeep, flushes and closes the journal. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Journal (with recovery, rotation, gzip and retention), forwarder and write path, wired together.
 * In fast_ack and background modes the dedupe index is loaded at start (its snapshot, then the journal
 * after it) so that a repeat of a write acknowledged before a crash is still answered as a duplicate.
 */
export async function startIngestStack(opts: {
  config: Config;
  sql: Sql;
  log: Logger;
  metrics: Metrics;
  onCommitted?: () => void;
}): Promise<IngestStack> {
  const { config, sql, log, metrics } = opts;
  // Rows are placed by partition: refuse a count other than the outbox's before anything is written.
  await claimOutbox(sql, config.partitions);
  let forwarder: Forwarder | undefined;
  let maintenance: JournalMaintenance | undefined;
  const journal = await JournalWriter.open({
    dir: config.journal.dir,
    nodeId: config.nodeId,
    segmentBytes: config.journal.segmentBytes,
    log,
    metrics,
    onDurable: () => forwarder?.wake(),
    onSegmentClosed: () => maintenance?.kick(),
  });
  const recentKeys = new RecentKeys(config.forwarder.recentKeys, config.nodeId);
  const unforwarded = (): number => Math.max(0, journal.nextSeq - 1 - (forwarder?.checkpoint.seq ?? 0));
  const writePath = new WritePath({
    unforwarded,
    maxUnforwarded: config.forwarder.maxUnforwarded,
    mode: config.writeMode,
    nodeId: config.nodeId,
    journal,
    sql,
    partitions: config.partitions,
    maxBatch: config.ingest.maxBatch,
    outboxWaitMs: config.ingest.syncOutboxWaitMs,
    forwardedThrough: () => forwarder?.checkpoint.seq ?? 0,
    recentKeys,
    log,
    ...(opts.onCommitted !== undefined ? { onCommitted: opts.onCommitted } : {}),
  });
  const fwd = new Forwarder({
    journal,
    sql,
    partitions: config.partitions,
    batchSize: config.forwarder.batchSize,
    pollMs: config.processor.pollMs,
    log,
    metrics,
    committed: () => writePath.committed,
    settledThrough: () => writePath.settledThrough,
    onForwarded: (seq) => {
      recentKeys.forwarded(seq);
      opts.onCommitted?.();
    },
  });
  forwarder = fwd;
  await fwd.init();
  const snapshots = config.writeMode === 'sync' ? undefined : new KeySnapshots({ nodeDir: journal.nodeDir, keys: recentKeys, intervalMs: config.forwarder.snapshotMs, log });
  if (snapshots !== undefined) {
    await loadDedupeIndex({ journal, forwarder: fwd, keys: recentKeys, log });
    snapshots.start();
  } else {
    // Any of them may have been answered from the journal before a crash: their tenants' writes keep
    // that way until the forwarder has passed them, so none overtakes them.
    let held = 0;
    await fwd.scan((e) => {
      writePath.viaJournalUntilForwarded(e.tenant_id, e.seq);
      held++;
    });
    if (held > 0) log.info('unforwarded journal records: their tenants write through the journal until forwarded', { records: held });
  }
  fwd.start();
  const upkeep = new JournalMaintenance({
    writer: journal,
    maxSegmentAgeMs: config.journal.maxSegmentAgeMs,
    retentionMs: config.journal.retentionMs,
    retentionBytes: config.journal.retentionBytes,
    intervalMs: config.journal.maintenanceMs,
    forwardedThrough: () => fwd.checkpoint.seq,
    log,
    metrics,
  });
  maintenance = upkeep;
  upkeep.start();

  let closing: Promise<void> | undefined;
  return {
    writePath,
    journal,
    forwarder: fwd,
    forwarderLag: unforwarded,
    close() {
      closing ??= (async () => {
        await writePath.drain();
        await upkeep.stop();
        await journal.close();
        // The last fsynced lines are forwarded now if the outbox answers; otherwise at the next start.
        await fwd.stop();
        await snapshots?.stop();
      })();
      return closing;
    },
  };
}
