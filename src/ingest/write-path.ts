import type { Clock } from '../core/clock.ts';
import type { WriteMode } from '../core/modes.ts';
import type { Envelope } from '../core/record.ts';
import type { JournalWriter } from '../journal/writer.ts';
import type { Logger } from '../log.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { AheadWrites } from './ahead-writes.ts';
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

/** What HTTP sees of ingest, after it has validated a request: the same for every write mode. */
export interface WritePath {
  write(envelopes: Envelope[]): Promise<WriteResult[]>;
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

/**
 * Ingest is one pipeline of stages, validate → journal → outbox (HTTP validates; the journal stage
 * is JournalWriter's group commit; the outbox stage is the sync insert and the forwarder). The write
 * modes of DESIGN.md are three compositions of those stages, differing in where the answer is given:
 *
 * - sync:       validate → [journal → outbox insert] → answer; the forwarder inserts what missed the wait
 * - fast_ack:   validate → dedupe index → [journal] → answer; the forwarder fills the outbox
 * - background: validate → dedupe index → answer; [journal] in the background; the forwarder fills the outbox
 */
export function createWritePath(o: WritePathOptions): SyncWrites | AheadWrites {
  const clock = o.clock !== undefined ? { clock: o.clock } : {};
  if (o.mode === 'sync') {
    const { nodeId, journal, progress, outbox, maxBatch, outboxWaitMs, log } = o;
    return new SyncWrites({ nodeId, journal, progress, outbox, maxBatch, outboxWaitMs, log, ...clock });
  }
  const { nodeId, journal, progress, recentKeys, maxUnforwarded, log } = o;
  return new AheadWrites({ answer: o.mode === 'fast_ack' ? 'journaled' : 'queued', nodeId, journal, progress, recentKeys, maxUnforwarded, log, ...clock });
}
