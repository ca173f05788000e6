import type { Envelope, JournalEntry, NewOutboxRow } from '../core/record.ts';
import { describeError, SluiceError } from '../errors.ts';
import {
  claimForTenants,
  enteredPartitions,
  markDead,
  markPublished,
  pendingPartitions,
  pendingTenants,
  recordFailure,
  type ClaimLimits,
  type Claimed,
  type Entered,
  type FailedRow,
  type IdRange,
  type PublishedRef,
} from './claims.ts';
import { outboxStats, pendingByTenant, statusCountsByTenant, type OutboxTenantStats, type StatusCounts } from './counts.ts';
import type { Sql } from './db.ts';
import { claimOutbox, readOutboxIdentity } from './identity.ts';
import { insertIsolating, insertOrQuarantine, type JournalPosition, type Quarantined } from './quarantine.ts';
import { requeueIds, requeueTenant, tenantHasRows, type TenantReplayFilter } from './replay-requeue.ts';
import { existingPairs, insertRows, outboxExists, rowFor, type InsertResult } from './repository.ts';
import { partitionOf } from './partition.ts';
import { deleteSent } from './retention.ts';

export type { Claimed, ClaimLimits, Entered, IdRange, InsertResult, PublishedRef };
export { ENTERED_SCAN_ROWS } from './claims.ts';

/**
 * The outbox, and every statement sluice runs on it: ingest and journal replay insert, the processor
 * claims, marks and retires, operators re-queue and count. Callers hold an Outbox, never a database
 * handle, so the table's shape and its indexes are known here alone (the files beside this one hold
 * the statements, grouped by who needs them).
 */
export class Outbox {
  readonly #sql: Sql;
  /** Partitions rows are placed in (SLUICE_PARTITIONS, checked against the outbox by `claim`). */
  readonly partitions: number;
  /**
   * Partitions that rows entered through this handle since the processor last took them: in serve the
   * processor wakes those partitions' tasks at once instead of asking the database which of its
   * partitions hold pending rows (a probe of each owned partition per ingest batch). At most
   * `partitions` entries, also where no processor takes them.
   */
  readonly #entered = new Set<number>();

  constructor(sql: Sql, partitions: number) {
    this.#sql = sql;
    this.partitions = partitions;
  }

  /** Answers when the database does; throws its error otherwise. */
  async ping(): Promise<void> {
    await this.#sql`SELECT 1`;
  }

  /** This outbox's identity, after checking SLUICE_PARTITIONS against the count it was first used with. */
  claim(): Promise<string> {
    return claimOutbox(this.#sql, this.partitions);
  }

  identity(): Promise<string> {
    return readOutboxIdentity(this.#sql);
  }

  /** False on a database that was never migrated. */
  exists(): Promise<boolean> {
    return unavailable(outboxExists(this.#sql));
  }

  // Ingest and replay.

  rowFor(e: Envelope & { ts: string }): NewOutboxRow {
    return rowFor(e, this.partitions);
  }

  async insert(rows: NewOutboxRow[]): Promise<InsertResult[]> {
    const results = await unavailable(insertRows(this.#sql, rows));
    for (const r of rows) this.#entered.add(r.partition);
    return results;
  }

  /** Inserts what the outbox accepts; rows it refuses for good come back by index, with the error. */
  async insertIsolating(rows: NewOutboxRow[]): Promise<{ results: InsertResult[]; refused: { index: number; error: string }[] }> {
    // Wrapped only here: the isolation itself reads the SQLSTATE of the raw error.
    const inserted = await unavailable(insertIsolating(this.#sql, rows));
    for (const r of rows) this.#entered.add(r.partition);
    return inserted;
  }

  /** Inserts journal entries; a line refused for good is quarantined with its position. */
  async insertOrQuarantine(entries: JournalEntry[], at: JournalPosition): Promise<{ results: InsertResult[]; quarantined: Quarantined[] }> {
    const inserted = await insertOrQuarantine(this.#sql, entries, this.partitions, at);
    for (const e of entries) this.#entered.add(partitionOf(e.tenant_id, this.partitions));
    return inserted;
  }

  /** The partitions written through this handle since the last call (a batch of duplicates too: a wake too many costs a probe). */
  takeEntered(): number[] {
    const partitions = [...this.#entered];
    this.#entered.clear();
    return partitions;
  }

  /** Which of these pairs the outbox holds, as pairKey strings. */
  existingPairs(pairs: { tenant_id: string; dedupe_key: string }[]): Promise<Set<string>> {
    return unavailable(existingPairs(this.#sql, pairs));
  }

  // The processor.

  pendingPartitions(partitions: readonly number[]): Promise<number[]> {
    return pendingPartitions(this.#sql, partitions);
  }

  enteredPartitions(partitions: readonly number[], after: string): Promise<Entered> {
    return enteredPartitions(this.#sql, partitions, after);
  }

  pendingTenants(partition: number): Promise<string[]> {
    return pendingTenants(this.#sql, partition);
  }

  claimRows(partition: number, grants: ReadonlyMap<string, number>, limits?: ClaimLimits): Promise<Claimed> {
    return claimForTenants(this.#sql, partition, grants, limits);
  }

  markPublished(refs: readonly PublishedRef[]): Promise<number> {
    return markPublished(this.#sql, refs);
  }

  recordFailure(rows: readonly FailedRow[], error: string, maxAttempts: number): Promise<string[]> {
    return recordFailure(this.#sql, rows, error, maxAttempts);
  }

  markDead(ids: readonly string[], error: string): Promise<number> {
    return markDead(this.#sql, ids, error);
  }

  deleteSent(retentionMs: number, limit: number): Promise<number> {
    return deleteSent(this.#sql, retentionMs, limit);
  }

  // Operators.

  requeueIds(ids: readonly string[]): Promise<{ id: string; tenant_id: string }[]> {
    return requeueIds(this.#sql, ids);
  }

  requeueTenant(f: TenantReplayFilter): Promise<{ matched: number; requeued: number }> {
    return requeueTenant(this.#sql, f);
  }

  tenantHasRows(tenant: string): Promise<boolean> {
    return tenantHasRows(this.#sql, tenant);
  }

  // Counts, each from an index (see counts.ts).

  tenantStats(): Promise<Map<string, OutboxTenantStats>> {
    return outboxStats(this.#sql);
  }

  pendingByTenant(): Promise<Map<string, number>> {
    return pendingByTenant(this.#sql);
  }

  statusCountsByTenant(): Promise<Map<string, StatusCounts>> {
    return statusCountsByTenant(this.#sql);
  }
}

/**
 * An error from the database rather than from what was read: postgres.js errors carry a SQLSTATE or a
 * connection code. Known here alone; callers see an `outbox_unavailable` SluiceError instead.
 */
function isDatabaseFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return err.name === 'PostgresError' || code === 'ECONNREFUSED' || code === 'CONNECTION_CLOSED';
}

/** A database failure as `outbox_unavailable` (the raw error as its cause); anything else as it was. */
async function unavailable<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (err) {
    if (isDatabaseFailure(err)) throw new SluiceError('outbox_unavailable', describeError(err), { cause: err });
    throw err;
  }
}
