import { describeError } from '../errors.ts';
import { backoffMs } from '../core/backoff.ts';
import { BackgroundLoop } from '../background-loop.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Sql } from '../outbox/db.ts';
import { ENTERED_SCAN_ROWS, type Outbox } from '../outbox/outbox.ts';
import type { Tenants } from '../tenants.ts';
import { PartitionOwnership } from './ownership.ts';
import { PartitionTask } from './partition-task.ts';
import { BEFORE_FIRST_POLL, POLL_LOOKBACK_MS, pollWindow, type PollMark } from './poll-window.ts';
import { ensureProgressTopic, ProgressReader } from './progress.ts';
import type { Publishing } from './publisher.ts';
import type { TenantControls } from './tenant-controls.ts';
import { sluiceTopics, topicProblem, type SluiceTopics } from '../core/topic-rule.ts';
import { follow, type Watermark } from '../core/watermark.ts';

export interface ProcessorOptions {
  outbox: Outbox;
  /** A client of one connection for the partition locks (see ownership.ts). */
  lockSession(onClose: () => void): Sql;
  /** The embedded database serves this process alone: it owns every partition without locks. */
  exclusive: boolean;
  brokers: string[];
  clientId: string;
  publishing: Publishing;
  controls: TenantControls;
  tenants: Tenants;
  log: Logger;
  metrics: Metrics;
  partitions: number;
  batchSize: number;
  batchBytes: number;
  pollMs: number;
  progressTopic: string;
  /** SLUICE_KAFKA_TOPIC: with the progress topic and the tenants' topics, what the topic rule protects. */
  defaultTopic: string;
  transactionalIdPrefix: string;
  /** This outbox's identity: the progress records it reads must carry it. */
  outboxIdentity: string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  rebalanceMs: number;
  retentionMs: number;
  cleanupMs: number;
  /** Whether Kafka answers: an instance that cannot publish takes no partitions (see ownership.ts). */
  canProcess(): boolean;
  /** Asks Kafka afresh before this instance gives up its partitions (see ownership.ts). */
  canProcessNow(): Promise<boolean>;
  /** How long Kafka may stay unreachable before this instance gives up its partitions. */
  unreachableReleaseMs: number;
  /**
   * serve: the ingest's mark of rows entering the outbox. Followed from start to stop, so rows are
   * published at once rather than at the next poll; rows that entered before start are found by the
   * tasks' first pass.
   */
  entered?: Watermark;
  /**
   * serve with its processor in a process of its own: the supervisor passes on each insert of the
   * node's ingest (wakePartitions), as `entered` does in one process.
   */
  relayed?: boolean;
}

const RETENTION_BATCH = 1_000;
/**
 * A task's own idle poll. Tasks are woken by the processor's one poll for all owned partitions
 * (every SLUICE_POLL_MS, and at once when ingest in this process inserts), which covers rows waiting
 * for a retry, a quota or a breaker too; their own poll is a safety net (for a row an operator
 * re-queued through another process, say), so it can be long.
 */
const TASK_IDLE_POLL_MS = 5_000;

/**
 * The processor of one instance: owns a fair share of the outbox partitions (see ownership.ts), runs
 * one PartitionTask per owned partition, and deletes sent rows once they are past retention.
 */
export class Processor {
  #o: ProcessorOptions;
  #tasks = new Map<number, PartitionTask>();
  #ownership: PartitionOwnership;
  #progressTopic: Promise<void> | undefined;
  #progress: ProgressReader | undefined;
  #retention: BackgroundLoop;
  /** One query per poll for every owned partition; wakes the tasks whose partitions have pending rows. */
  #poll: BackgroundLoop;
  /**
   * The polls that bound the next one's look, newest last; empty until the first, and headed by
   * BEFORE_FIRST_POLL (a look at every pending row) until the writers running at the first have
   * ended. A poll looks above the oldest one's top, which stays back while a transaction that may
   * still add rows below later tops runs (pollWindow): a row whose insert committed after rows above
   * its id were polled is still found, up to POLL_LOOKBACK_MS later.
   */
  #marks: PollMark[] = [];
  /** Calls of wake(), which asks for a look at every pending row, not only the new ones. */
  #wakes = 0;
  /** wake() calls that a poll's look at every pending row has answered. */
  #wakesAnswered = 0;
  #topics: SluiceTopics;
  #stopped = new AbortController();

  constructor(opts: ProcessorOptions) {
    this.#o = opts;
    this.#topics = sluiceTopics(opts.progressTopic, opts.defaultTopic, opts.tenants);
    this.#retention = new BackgroundLoop({
      name: 'outbox retention',
      log: opts.log,
      intervalMs: opts.cleanupMs,
      pass: (signal) => this.#deleteSent(signal),
      failed: (err) => {
        opts.log.warn('outbox retention failed; will retry', { error: describeError(err) });
        return opts.cleanupMs;
      },
    });
    this.#poll = new BackgroundLoop({
      name: 'outbox poll',
      log: opts.log,
      intervalMs: opts.pollMs,
      pass: () => this.#wakePending(),
      // A task reads the same database and reports its failures itself.
      failed: (err, failures) => {
        opts.log.debug('outbox poll failed; will retry', { error: describeError(err), failures });
        return backoffMs(failures, 100, TASK_IDLE_POLL_MS);
      },
    });
    opts.metrics.partitions.set(opts.partitions);
    this.#ownership = new PartitionOwnership({
      lockSession: opts.lockSession,
      exclusive: opts.exclusive,
      partitions: opts.partitions,
      rebalanceMs: opts.rebalanceMs,
      log: opts.log,
      metrics: opts.metrics,
      acquired: (p) => this.#startTask(p),
      releasing: (p) => this.#stopTask(p),
      canProcess: opts.canProcess,
      canProcessNow: opts.canProcessNow,
      unreachableReleaseMs: opts.unreachableReleaseMs,
    });
  }

  start(): void {
    // exactly_once: every task's first pass reads the progress topic after its producer's fence. The
    // topic is made sure of now, while partitions are taken and their producers initialised, not after
    // (a failure here is met again, and reported, by the tasks' own call).
    if (this.#o.publishing.guarantee === 'exactly_once') {
      void this.#ensureProgressTopic()
        .then(() => (this.#stopped.signal.aborted ? undefined : this.#progressReader().prepare(this.#o.partitions)))
        .catch(() => {});
    }
    this.#ownership.start();
    this.#retention.start();
    this.#poll.start();
    if (this.#o.entered !== undefined) follow(this.#o.entered, this.#stopped.signal, () => this.#wakeEntered());
  }

  /**
   * Rows entered the outbox through this process's ingest, which inserts through the same Outbox: the
   * tasks of their partitions run now, without the poll's query over every owned partition (one per
   * ingest batch, otherwise). None noted (the forwarder moves the mark also when it inserted nothing,
   * or an earlier wake took them): nothing to do. Partitions owned elsewhere, and rows written by other
   * processes, are found by the poll.
   */
  #wakeEntered(): void {
    this.#wakeTasks(this.#o.outbox.takeEntered());
  }

  /** Rows entered these partitions through the node's ingest in another process (see `relayed`). */
  wakePartitions(partitions: Iterable<number>): void {
    this.#wakeTasks(partitions);
  }

  #wakeTasks(partitions: Iterable<number>): void {
    for (const p of partitions) {
      const task = this.#tasks.get(p);
      // New rows cannot cure a failing task (Kafka down, say): its backoff is not cut short.
      if (task !== undefined && !task.failing) task.wake();
    }
  }

  /** Look for rows now instead of at the end of the idle wait: the tasks of partitions that have some run. */
  wake(): void {
    this.#wakes++;
    this.#poll.wake();
  }

  /** Kafka became reachable or unreachable: take or give up partitions now. */
  kafkaChanged(): void {
    this.#ownership.wake();
  }

  get owned(): ReadonlySet<number> {
    return this.#ownership.owned;
  }

  /** The last publish error of any task, until its next batch succeeds. */
  get lastError(): string | undefined {
    for (const task of this.#tasks.values()) if (task.lastError !== undefined) return task.lastError;
    return undefined;
  }

  /** Finishes (or aborts) each open batch, releases the partitions, then stops. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    await Promise.all([this.#ownership.stop(), this.#retention.stop(), this.#poll.stop()]);
    await this.#progress?.close();
  }

  #startTask(partition: number): void {
    const o = this.#o;
    const exactlyOnce = o.publishing.guarantee === 'exactly_once';
    const task = new PartitionTask({
      partition,
      outbox: o.outbox,
      producer: o.publishing.forPartition(partition),
      ...(exactlyOnce
        ? {
            lastCommitted: async () => {
              await this.#ensureProgressTopic();
              return this.#progressReader().read(partition);
            },
          }
        : {}),
      controls: o.controls,
      tenants: o.tenants,
      metrics: o.metrics,
      log: o.log,
      batchSize: o.batchSize,
      batchBytes: o.batchBytes,
      pollMs: Math.max(o.pollMs, TASK_IDLE_POLL_MS),
      insertsWake: o.entered !== undefined || o.relayed === true,
      maxAttempts: o.maxAttempts,
      retryBaseMs: o.retryBaseMs,
      retryMaxMs: o.retryMaxMs,
      stillOwned: () => this.#ownership.holds(partition),
      topicProblem: (topic) => topicProblem(topic, this.#topics),
      onFenced: (p) => {
        if (this.#tasks.get(p) === task) this.#tasks.delete(p);
        void this.#ownership.release(p);
      },
    });
    this.#tasks.set(partition, task);
    task.start();
  }

  async #stopTask(partition: number): Promise<void> {
    const task = this.#tasks.get(partition);
    this.#tasks.delete(partition);
    await task?.stop();
  }

  #progressReader(): ProgressReader {
    const o = this.#o;
    this.#progress ??= new ProgressReader({
      brokers: o.brokers,
      topic: o.progressTopic,
      transactionalIdPrefix: o.transactionalIdPrefix,
      outboxIdentity: o.outboxIdentity,
      clientId: o.clientId,
      log: o.log,
    });
    return this.#progress;
  }

  #ensureProgressTopic(): Promise<void> {
    const o = this.#o;
    this.#progressTopic ??= ensureProgressTopic(o.brokers, o.progressTopic, o.partitions, o.clientId, this.#stopped.signal).then(
      (found) => {
        const policy = found?.cleanupPolicy;
        if (policy !== undefined && policy.replaceAll(' ', '') !== 'compact') {
          // A topic made by hand, or by another tool, keeps its settings: changing them is the operator's call.
          o.log.warn('progress topic does not keep the last record of each partition: one idle past its retention can lose it, and a batch committed but not marked sent before a crash is then published again; set cleanup.policy=compact', {
            topic: o.progressTopic,
            cleanup_policy: policy,
          });
        }
      },
      (err: unknown) => {
        this.#progressTopic = undefined;
        throw err;
      },
    );
    return this.#progressTopic;
  }

  /**
   * Wakes the tasks that have rows to publish. Each poll looks only at the rows that entered since an
   * earlier poll (a primary-key range: see #marks) and wakes the tasks whose last pass was held back by time
   * (`PartitionTask.held`). Looking for any pending row instead (pendingPartitions) walks the pending
   * index's entry of every row published since the outbox's last VACUUM, for each idle partition:
   * 3.9 ms a poll at 1 M such rows (bench --growth), 20 times a second. That look is done at the first
   * poll and when wake() asks for it (an operator's replay in this process re-queues rows with their
   * old ids).
   */
  async #wakePending(): Promise<'idle'> {
    if (this.#tasks.size === 0) {
      // Partitions taken later start from a look at everything again, not from polls made without them.
      this.#marks = [];
      return 'idle';
    }
    const owned = [...this.#tasks.keys()];
    // Before the first poll, and until the writers running at it have ended, the bound is "everything".
    const marks = this.#marks.length === 0 ? [BEFORE_FIRST_POLL] : this.#marks;
    const first = marks[0] as PollMark;
    // Counted before the look, so a wake() during it is answered by the next; after it, so a failed one is tried again.
    const wakes = this.#wakes;
    const everywhere = wakes > this.#wakesAnswered || first === BEFORE_FIRST_POLL;
    const entered = await this.#o.outbox.enteredPartitions(everywhere ? [] : owned, everywhere ? '0' : first.top);
    const found = everywhere ? await this.#o.outbox.pendingPartitions(owned) : entered.cut ? owned : entered.partitions;
    this.#marks = pollWindow(marks, entered, POLL_LOOKBACK_MS, ENTERED_SCAN_ROWS);
    this.#wakesAnswered = wakes;
    this.#wakeTasks(new Set([...found, ...owned.filter((p) => this.#tasks.get(p)?.held === true)]));
    return 'idle';
  }

  async #deleteSent(signal: AbortSignal): Promise<void> {
    const { outbox, metrics, retentionMs } = this.#o;
    let deleted: number;
    do {
      deleted = await outbox.deleteSent(retentionMs, RETENTION_BATCH);
      metrics.outboxRetentionDeleted.inc(deleted);
    } while (deleted === RETENTION_BATCH && !signal.aborted);
  }
}
