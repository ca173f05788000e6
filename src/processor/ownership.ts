import type postgres from 'postgres';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Sql } from '../outbox/db.ts';
import { Idle } from '../idle.ts';

// Two-key advisory locks: (namespace, number). Any constants work; every sluice must use the same.
const PARTITION_LOCKS = 0x511ce0;
const MEMBER_LOCKS = 0x511ce1;

export interface OwnershipOptions {
  sql: Sql;
  /** The embedded database serves one process (it holds a lock file): it owns every partition. */
  exclusive: boolean;
  partitions: number;
  rebalanceMs: number;
  log: Logger;
  metrics: Metrics;
  acquired(partition: number): void;
  /** Called before a partition's lock is released; resolves once its task stopped. */
  releasing(partition: number): Promise<void>;
}

/**
 * Which outbox partitions this instance owns. Ownership is a session-level advisory lock held on a
 * reserved connection: when the instance dies, Postgres ends the session and frees its partitions.
 * Every instance also holds a member lock, so each can count the live instances and keep its fair
 * share (ceil(P / members)): it gives partitions up when others join and takes free ones over when
 * an instance leaves or dies.
 */
export class PartitionOwnership {
  #o: OwnershipOptions;
  #owned = new Set<number>();
  #conn: postgres.ReservedSql | undefined;
  #abort = new AbortController();
  #idle = new Idle(this.#abort.signal);
  #loop: Promise<void> | undefined;
  #start = Math.floor(Math.random() * 0x7fffffff);

  constructor(opts: OwnershipOptions) {
    this.#o = opts;
  }

  get owned(): ReadonlySet<number> {
    return this.#owned;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Whether this instance's session still holds the partition's lock (Postgres says, not memory). */
  async holds(partition: number): Promise<boolean> {
    if (!this.#owned.has(partition)) return false;
    if (this.#o.exclusive) return true;
    const conn = this.#conn;
    if (conn === undefined) return false;
    try {
      const [row] = await conn<{ held: boolean }[]>`
        SELECT EXISTS (
          SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND classid = ${PARTITION_LOCKS}::int::oid AND objid = ${partition}::int::oid
        ) AS held`;
      return row?.held === true;
    } catch {
      return false;
    }
  }

  /**
   * A partition whose task stopped on its own (its producer was fenced) is given up, so the next
   * rebalance places it again, here or elsewhere, with a fresh task that recovers first.
   */
  async release(partition: number): Promise<void> {
    if (!this.#owned.delete(partition)) return;
    this.#o.metrics.partitionsOwned.set(this.#owned.size);
    const conn = this.#conn;
    if (!this.#o.exclusive && conn !== undefined) await conn`SELECT pg_advisory_unlock(${PARTITION_LOCKS}, ${partition})`.catch(() => {});
  }

  /** Stops every owned partition's task, then releases the locks. Safe to call twice. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await this.#releaseAll();
    if (this.#conn !== undefined) {
      await this.#conn`SELECT pg_advisory_unlock_all()`.catch(() => {});
      this.#conn.release();
      this.#conn = undefined;
    }
  }

  async #run(): Promise<void> {
    let failing = false;
    while (!this.#abort.signal.aborted) {
      try {
        await this.#rebalance();
        if (failing) this.#o.log.info('partition ownership restored', { owned: [...this.#owned] });
        failing = false;
      } catch (err) {
        if (!failing) this.#o.log.warn('partition ownership check failed', { error: describeError(err) });
        failing = true;
        await this.#lostConnection();
      }
      this.#o.metrics.partitionsOwned.set(this.#owned.size);
      await this.#idle.wait(this.#o.rebalanceMs);
    }
  }

  async #rebalance(): Promise<void> {
    const { partitions } = this.#o;
    if (this.#o.exclusive) {
      for (let p = 0; p < partitions && this.#owned.size < partitions; p++) this.#take(p);
      return;
    }
    const conn = await this.#connection();
    // A lock can be lost without this instance noticing otherwise (an administrator's
    // pg_terminate_backend, say): what the session holds is the truth.
    const held = new Set(
      (
        await conn<{ p: number }[]>`
          SELECT objid::int AS p FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = ${PARTITION_LOCKS}::int::oid AND granted`
      ).map((r) => r.p),
    );
    for (const p of [...this.#owned]) {
      if (!held.has(p)) {
        this.#o.log.warn('partition lock lost', { partition: p });
        await this.#drop(p);
      }
    }
    const [row] = await conn<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND classid = ${MEMBER_LOCKS}::int::oid AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
    const members = Math.max(1, row?.n ?? 1);
    const share = Math.ceil(partitions / members);
    // Give up the highest-numbered extras first; their tasks finish the batch in flight.
    for (const p of [...this.#owned].sort((a, b) => b - a).slice(0, Math.max(0, this.#owned.size - share))) {
      await this.#drop(p);
      await conn`SELECT pg_advisory_unlock(${PARTITION_LOCKS}, ${p})`;
      this.#o.log.info('partition released for rebalance', { partition: p, members, share });
    }
    for (let i = 0; i < partitions && this.#owned.size < share && !this.#abort.signal.aborted; i++) {
      // Each instance starts its search elsewhere, so joiners do not all contend for partition 0.
      const p = (this.#start + i) % partitions;
      if (this.#owned.has(p)) continue;
      const [got] = await conn<{ ok: boolean }[]>`SELECT pg_try_advisory_lock(${PARTITION_LOCKS}, ${p}) AS ok`;
      if (got?.ok === true) this.#take(p);
    }
  }

  async #connection(): Promise<postgres.ReservedSql> {
    if (this.#conn !== undefined) return this.#conn;
    const conn = await this.#o.sql.reserve();
    try {
      for (;;) {
        const [got] = await conn<{ ok: boolean }[]>`SELECT pg_try_advisory_lock(${MEMBER_LOCKS}, ${this.#start}) AS ok`;
        if (got?.ok === true) break;
        this.#start = Math.floor(Math.random() * 0x7fffffff);
      }
    } catch (err) {
      conn.release();
      throw err;
    }
    this.#conn = conn;
    return conn;
  }

  /** The session is gone, and with it every lock: stop all tasks before anyone else starts them. */
  async #lostConnection(): Promise<void> {
    if (this.#o.exclusive) return;
    await this.#releaseAll();
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn !== undefined) {
      // The session may still be alive (only a query failed): end it so its locks are surely gone.
      await conn`SELECT pg_advisory_unlock_all()`.catch(() => {});
      conn.release();
    }
  }

  #take(p: number): void {
    this.#owned.add(p);
    this.#o.log.info('partition acquired', { partition: p });
    this.#o.acquired(p);
  }

  async #drop(p: number): Promise<void> {
    this.#owned.delete(p);
    await this.#o.releasing(p);
  }

  async #releaseAll(): Promise<void> {
    await Promise.all([...this.#owned].map((p) => this.#drop(p)));
  }

}
