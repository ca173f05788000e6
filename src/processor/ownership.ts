import { describeError, SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Sql } from '../outbox/db.ts';
import { BackgroundLoop } from '../background-loop.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { backoffMs } from '../core/backoff.ts';

// Two-key advisory locks: (namespace, number). Any constants work; every sluice must use the same.
const PARTITION_LOCKS = 0x511ce0;
const MEMBER_LOCKS = 0x511ce1;

export interface OwnershipOptions {
  /**
   * Opens a client of one connection that holds the locks; `onClose` runs when its connection
   * closes. Not called when `exclusive`.
   */
  lockSession(onClose: () => void): Sql;
  /** The embedded database serves one process (it holds a lock file): it owns every partition. */
  exclusive: boolean;
  partitions: number;
  rebalanceMs: number;
  log: Logger;
  metrics: Metrics;
  acquired(partition: number): void;
  /** Called before a partition's lock is released; resolves once its task stopped. */
  releasing(partition: number): Promise<void>;
  /**
   * Whether this instance can process now (its Kafka answers). While it cannot, it is no member and
   * takes no partition; what it owns it gives up after `unreachableReleaseMs`, so a healthy
   * instance takes those tenants over, while a short blip does not move every partition.
   */
  canProcess(): boolean;
  /**
   * Asks Kafka afresh, once, before partitions are given up: canProcess() is the last background
   * probe's answer, up to a probe interval old, and a broker back since must not move every partition.
   */
  canProcessNow(): Promise<boolean>;
  unreachableReleaseMs: number;
  clock?: Clock;
}

/**
 * Which outbox partitions this instance owns. Ownership is a session-level advisory lock held on a
 * connection of its own: when the instance dies, Postgres ends the session and frees its partitions.
 * Every instance also holds a member lock, so each can count the live instances and keep its fair
 * share (ceil(P / members)): it gives partitions up when others join and takes free ones over when
 * an instance leaves or dies.
 *
 * The session is a client of its own (not a connection reserved from the pool: postgres.js lets a
 * reserved handle write to a connection that has closed, porsager/postgres#1208). Its client would
 * reconnect silently, so every lock query also returns the backend pid and a different pid means
 * the session, and every lock with it, is gone; its close event stops every task at once.
 */
export class PartitionOwnership {
  #o: OwnershipOptions;
  #owned = new Set<number>();
  #session: LockSession | undefined;
  #clock: Clock;
  #loop: BackgroundLoop;
  #start = Math.floor(Math.random() * 0x7fffffff);
  /** When (on the clock) canProcess() was first seen false, until it is true again. */
  #cannotSince: number | undefined;

  constructor(opts: OwnershipOptions) {
    this.#o = opts;
    this.#clock = opts.clock ?? systemClock;
    const { log, metrics, rebalanceMs } = opts;
    this.#loop = new BackgroundLoop({
      name: 'partition ownership',
      log,
      clock: this.#clock,
      intervalMs: rebalanceMs,
      pass: async () => {
        try {
          await this.#rebalance();
        } catch (err) {
          await this.#lostConnection();
          throw err;
        } finally {
          metrics.partitionsOwned.set(this.#owned.size);
        }
      },
      failed: (err, failures) => {
        // The first failure and then every tenth: an outage must not flood the log.
        if (failures === 1 || failures % 10 === 0) log.warn('partition ownership check failed; retrying', { error: describeError(err), failures });
        return backoffMs(failures, Math.min(100, rebalanceMs), rebalanceMs);
      },
      recovered: (failures) => log.info('partition ownership restored', { owned: [...this.#owned], after_failures: failures }),
    });
  }

  get owned(): ReadonlySet<number> {
    return this.#owned;
  }

  start(): void {
    this.#loop.start();
  }

  /** Rebalances now instead of at the end of the idle wait (canProcess() changed). */
  wake(): void {
    this.#loop.wake();
  }

  /** Whether this instance's session still holds the partition's lock (Postgres says, not memory). */
  async holds(partition: number): Promise<boolean> {
    if (!this.#owned.has(partition)) return false;
    if (this.#o.exclusive) return true;
    const session = this.#session;
    if (session === undefined) return false;
    try {
      const [row] = await session.sql<{ held: boolean; pid: number }[]>`
        SELECT EXISTS (
          SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND classid = ${PARTITION_LOCKS}::int::oid AND objid = ${partition}::int::oid
        ) AS held, pg_backend_pid() AS pid`;
      return row?.held === true && row.pid === session.pid && this.#session === session;
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
    const session = this.#session;
    if (!this.#o.exclusive && session !== undefined) await session.sql`SELECT pg_advisory_unlock(${PARTITION_LOCKS}, ${partition})`.catch(() => {});
  }

  /** Stops every owned partition's task, then releases the locks. Safe to call twice. */
  async stop(): Promise<void> {
    await this.#loop.stop();
    await this.#releaseAll();
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined) {
      await session.sql`SELECT pg_advisory_unlock_all()`.catch(() => {});
      await endSession(session);
    }
  }

  async #rebalance(): Promise<void> {
    const { partitions } = this.#o;
    if (this.#o.exclusive) {
      for (let p = 0; p < partitions && this.#owned.size < partitions; p++) this.#take(p);
      return;
    }
    const able = this.#o.canProcess();
    if (able) this.#cannotSince = undefined;
    else {
      this.#cannotSince ??= this.#clock.now();
      const owned = this.#owned.size;
      const giveUp = owned === 0 || this.#clock.now() - this.#cannotSince >= this.#o.unreachableReleaseMs;
      if (giveUp && owned > 0 && (await this.#o.canProcessNow())) this.#cannotSince = undefined;
      else if (giveUp) {
        if (this.#session !== undefined || owned > 0) {
          // The outage itself is the warning (KafkaHealth, once); this is its consequence here.
          this.#o.log.info('cannot process (Kafka unreachable); leaving the partitions to other instances', { released: [...this.#owned] });
          // Ending the session frees the member lock too: the others' fair share grows to cover these.
          await this.#lostConnection();
        }
        return;
      }
    }
    const session = await this.#connection();
    const conn = session.sql;
    // A lock can be lost without this instance noticing otherwise (an administrator's
    // pg_terminate_backend, say): what the session holds is the truth.
    const locks = await conn<{ p: number | null; pid: number }[]>`
      SELECT l.objid::int AS p, b.pid FROM (SELECT pg_backend_pid() AS pid) b
      LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.pid = b.pid AND l.classid = ${PARTITION_LOCKS}::int::oid AND l.granted`;
    this.#sameSession(session, locks[0]?.pid);
    const held = new Set(locks.flatMap((r) => (r.p === null ? [] : [r.p])));
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
    for (let i = 0; able && i < partitions && this.#owned.size < share && !this.#loop.signal.aborted; i++) {
      // Each instance starts its search elsewhere, so joiners do not all contend for partition 0.
      const p = (this.#start + i) % partitions;
      if (this.#owned.has(p)) continue;
      const [got] = await conn<{ ok: boolean; pid: number }[]>`SELECT pg_try_advisory_lock(${PARTITION_LOCKS}, ${p}) AS ok, pg_backend_pid() AS pid`;
      this.#sameSession(session, got?.pid);
      if (got?.ok === true) this.#take(p);
    }
  }

  async #connection(): Promise<LockSession> {
    if (this.#session !== undefined) return this.#session;
    const session: LockSession = { sql: this.#o.lockSession(() => this.#closed(session)), pid: 0 };
    try {
      for (;;) {
        const [got] = await session.sql<{ ok: boolean; pid: number }[]>`
          SELECT pg_try_advisory_lock(${MEMBER_LOCKS}, ${this.#start}) AS ok, pg_backend_pid() AS pid`;
        if (got?.ok === true) {
          session.pid = got.pid;
          break;
        }
        this.#start = Math.floor(Math.random() * 0x7fffffff);
      }
    } catch (err) {
      await endSession(session);
      throw err;
    }
    this.#session = session;
    return session;
  }

  /** A pid other than the session's: the client reconnected, so the locks were lost with the old session. */
  #sameSession(session: LockSession, pid: number | undefined): void {
    if (pid !== session.pid || this.#session !== session) throw new SluiceError('outbox_unavailable', `lock session replaced (backend ${session.pid} is gone)`);
  }

  /** The lock session's connection closed: every lock went with it, so every task stops now. */
  #closed(session: LockSession): void {
    if (this.#session !== session) return;
    this.#session = undefined;
    this.#o.log.warn('partition lock session closed; stopping every partition task', { owned: [...this.#owned] });
    void this.#releaseAll()
      .catch((err: unknown) => this.#o.log.error('stopping partition tasks failed', { error: describeError(err) }))
      .finally(() => this.#o.metrics.partitionsOwned.set(this.#owned.size));
    this.#o.metrics.partitionsOwned.set(0);
    void endSession(session);
    this.#loop.wake();
  }

  /** The session is gone, and with it every lock: stop all tasks before anyone else starts them. */
  async #lostConnection(): Promise<void> {
    if (this.#o.exclusive) return;
    await this.#releaseAll();
    const session = this.#session;
    this.#session = undefined;
    // The session may still be alive (only a query failed): ending it surely frees its locks.
    if (session !== undefined) await endSession(session);
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

interface LockSession {
  sql: Sql;
  /** The backend that holds the member lock: a query answered by any other backend means it is gone. */
  pid: number;
}

async function endSession(session: LockSession): Promise<void> {
  await session.sql.end({ timeout: 1 }).catch(() => {});
}
