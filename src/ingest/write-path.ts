import type { Clock } from '../core/clock.ts';
import type { WriteMode } from '../core/modes.ts';
import type { Envelope } from '../core/record.ts';
import { readEntriesAfter } from '../journal/reader.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { follow } from '../core/watermark.ts';
import { AheadWrites } from './ahead-writes.ts';
import { KeySnapshots, loadDedupeIndex } from './dedupe-start.ts';
import type { Forwarder } from './forwarder.ts';
import type { OutboxProgress } from './outbox-progress.ts';
import type { RecentKeys } from './recent-keys.ts';
import { SyncWrites } from './sync-writes.ts';

export type Durability = 'outbox' | 'journal' | 'memory';

export interface WriteResult {
  /** Outbox id (sync), journal position `<node>:<seq>` (fast_ack), null while only in memory (background). */
  id: string | null;
  tenant_id: string;
  dedupe_key: string;
  duplicate: boolean;
  durability: Durability;
}

/**
 * The request body a write came in (SLUICE_MAX_BODY_BYTES_IN_FLIGHT counts it until its answer).
 * A write path that holds the request's events past the answer (background: until they are
 * journaled) keeps it, and lets it go with the function `keep` returns.
 */
export interface HeldBody {
  keep(): () => void;
}

/** What HTTP sees of ingest, after it has validated a request: the same for every write mode. */
export interface WritePath {
  write(envelopes: Envelope[], body?: HeldBody): Promise<WriteResult[]>;
  /**
   * True when every write of the request repeats a key this node holds (the outbox in sync, the
   * dedupe index otherwise): it can only be answered as duplicates, so no backlog limit refuses it.
   */
  holds(envelopes: readonly Envelope[]): Promise<boolean>;
  /** Why every new write would be refused now (SLUICE_MAX_UNFORWARDED), or undefined. */
  readonly refusal: string | undefined;
  /** Writes accepted but not yet answered (or, in background mode, not yet journaled). */
  readonly inFlight: number;
  /** Resolves once every accepted write has been answered and every background write journaled. */
  drain(): Promise<void>;
}

export interface WritePathOptions {
  mode: WriteMode;
  nodeId: string;
  journal: JournalWriter;
  progress: OutboxProgress;
  outbox: Outbox;
  maxBatch: number;
  /** fast_ack and background: the dedupe index, holding every key not yet in the outbox. */
  recentKeys: RecentKeys;
  /**
   * fast_ack and background refuse writes past this many unforwarded records: the forwarder is
   * limited by the outbox, and every unforwarded key is held in memory for dedupe.
   */
  maxUnforwarded: number;
  /** sync: how long a write waits for its outbox insert before it is answered from the journal. */
  outboxWaitMs: number;
  log: Logger;
  clock?: Clock;
}

/** A write path with what its mode runs beside it: in fast_ack and background, the dedupe index's rebuild and snapshots. */
export interface ComposedWritePath {
  readonly writePath: WritePath;
  /** Shutdown began: a dedupe index rebuild still reading the journal gives up, and writes waiting for it are answered `shutting_down`. */
  closing(): void;
  /** After the forwarder's last pass: stops following it and writes the last key snapshot. */
  stop(): Promise<void>;
}

/**
 * Ingest is one pipeline of stages, validate → journal → outbox (HTTP validates; the journal stage
 * is JournalWriter's group commit; the outbox stage is the sync insert and the forwarder). The write
 * modes of DESIGN.md are three compositions of those stages, differing in where the answer is given:
 *
 * - sync:       validate → [journal → outbox insert] → answer; the forwarder inserts what missed the wait
 * - fast_ack:   validate → dedupe index → [journal] → answer; the forwarder fills the outbox
 * - background: validate → dedupe index → answer; [journal] in the background; the forwarder fills the outbox
 *
 * Before the first write: sync keeps the tenants of records the last run left unforwarded on the
 * journal's way (OutboxProgress.viaJournal), so none of their writes overtakes them; fast_ack and
 * background load the dedupe index (its snapshot, then the journal after it) so that a repeat of a
 * write acknowledged before a crash is still answered as a duplicate, age forwarded keys out of it,
 * and snapshot it.
 */
export async function startWritePath(o: WritePathOptions & { forwarder: Forwarder; snapshotMs: number }): Promise<ComposedWritePath> {
  const clock = o.clock !== undefined ? { clock: o.clock } : {};
  const { nodeId, journal, progress, log } = o;
  if (o.mode === 'sync') {
    let held = 0;
    const from = o.forwarder.checkpoint;
    await readEntriesAfter(journal, from, from.seq, (e) => {
      progress.viaJournalUntilForwarded(e.tenant_id, e.seq);
      held++;
    });
    if (held > 0) log.info('unforwarded journal records: their tenants write through the journal until forwarded', { records: held });
    const { outbox, maxBatch, outboxWaitMs } = o;
    const writePath = new SyncWrites({ nodeId, journal, progress, outbox, maxBatch, outboxWaitMs, log, ...clock });
    return { writePath, closing: () => {}, stop: async () => {} };
  }
  const { recentKeys, maxUnforwarded } = o;
  const stopRebuild = new AbortController();
  const stopped = new AbortController();
  await loadDedupeIndex({ journal, checkpoint: () => o.forwarder.checkpoint, keys: recentKeys, log, signal: stopRebuild.signal });
  // Forwarded keys age out of the index: it holds every unforwarded key and a window of the rest.
  follow(progress.forwarded, stopped.signal, (seq) => recentKeys.forwarded(seq));
  const snapshots = new KeySnapshots({ nodeDir: journal.nodeDir, keys: recentKeys, intervalMs: o.snapshotMs, log });
  snapshots.start();
  const { forwarder } = o;
  const forwarderFailing = (): boolean => forwarder.failingMs() > 0;
  const writePath = new AheadWrites({ answer: o.mode === 'fast_ack' ? 'journaled' : 'queued', nodeId, journal, progress, recentKeys, maxUnforwarded, forwarderFailing, log, ...clock });
  return {
    writePath,
    closing: () => stopRebuild.abort(),
    async stop() {
      stopped.abort();
      await snapshots.stop();
    },
  };
}
