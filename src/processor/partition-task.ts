import type { ClaimedRow } from '../core/record.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Claimed, IdRange, PublishedRef } from '../outbox/outbox.ts';
import type { Outbox } from '../outbox/outbox.ts';
import type { Tenants } from '../tenants.ts';
import { backoffMs } from '../core/backoff.ts';
import { allocate, roundRobin, type Claimant } from './fair-share.ts';
import { SluiceError } from '../errors.ts';
import { classifyFailure, describeKafkaError, failureReason, kafkaError, type KafkaError } from '../kafka/errors.ts';
import type { TenantControls } from './tenant-controls.ts';
import { BackgroundLoop } from '../background-loop.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { KnownRefusals, refusedByKafka, tooLarge } from './known-refusals.ts';
import { recordBatchBytes, type PartitionProducer } from './publisher.ts';

/** Kafka's refusals of a record batch for its size: the same verdict for any record no smaller. */
const SIZE_CODES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

export interface PartitionTaskOptions {
  partition: number;
  outbox: Outbox;
  producer: PartitionProducer;
  /** exactly_once: the rows named by the partition's last committed progress record. */
  lastCommitted?: () => Promise<PublishedRef[]>;
  controls: TenantControls;
  tenants: Tenants;
  metrics: Metrics;
  log: Logger;
  batchSize: number;
  /** Payload bytes per batch, below the broker's message.max.bytes. */
  batchBytes: number;
  pollMs: number;
  /**
   * Every row inserted from now on comes with a wake (serve: this process's ingest; see
   * Processor.wake): a pass that drained its partition is not followed by one that would find it empty.
   */
  insertsWake?: boolean;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Whether this instance still holds the partition's lock: checked before its producer is (re)initialised. */
  stillOwned(): Promise<boolean>;
  /** The task stopped because a newer owner fenced it (or the lock was found lost). */
  onFenced(partition: number): void;
  /** The topic rule (src/core/topic-rule.ts): why no record may go to this topic, or undefined. */
  topicProblem(topic: string): string | undefined;
  clock?: Clock;
}

const MAX_LOOP_BACKOFF_MS = 5_000;
/** A lone tenant's topics tried one by one while all fail alike, before it counts as the cluster's problem. */
const MAX_UNCHARGED_GROUPS = 3;

/** A failure that names no record: the topic's or the cluster's. */
function notRecords(f: KafkaError): boolean {
  return f.kind === 'topic' || f.kind === 'transient';
}
/** A healthy commit takes milliseconds; well under SLUICE_SHUTDOWN_TIMEOUT_MS. */
const STOP_GRACE_MS = 2_000;

/** Another instance publishes this partition now: a newer transactional producer, or the lock is gone. */
function fenced(err: unknown): boolean {
  return (err instanceof SluiceError && err.code === 'partition_lost') || classifyFailure(err) === 'fenced';
}

/**
 * One owned outbox partition, Kafka-Streams style: claims the partition's pending rows (tenants
 * round-robin, each within its quota and breaker, each in id order), publishes them as one batch
 * and marks them sent. In exactly_once a batch is one Kafka transaction with a progress record; on
 * start the task fences the previous owner and marks sent what its last committed batch held.
 */
export class PartitionTask {
  readonly partition: number;
  #o: PartitionTaskOptions;
  #loop: BackgroundLoop;
  #lastTenant: string | undefined;
  /**
   * Committed to Kafka but not yet marked in Postgres. After a commit they are marked while the next
   * batch is claimed and sent (#marking), and that batch commits only once they are marked: the
   * progress record then names the only batch that can be committed and unmarked, as recovery
   * assumes. After a failed marking they are marked before anything else is claimed.
   */
  #unmarked: PublishedRef[] = [];
  /**
   * The ids of #unmarked per tenant while #marking runs: the next claim skips them. Emptied once the
   * marking committed, or they would hide a row an operator re-queued into them for as long as no
   * batch follows.
   */
  #markingRanges = new Map<string, IdRange>();
  /** The marking of #unmarked in flight; settles with its error, or undefined once they are marked. */
  #marking: Promise<unknown> | undefined;
  /** The last batch was cut short by the byte limit: rows it claimed are still due, as after a full batch. */
  #cutByBytes = false;
  /** #marking failed: the next pass fails with its error before claiming (and the one after marks anew). */
  #markingFailed = false;
  #lastError: string | undefined;
  /** See `held`. */
  #held = false;
  /** False until the producer was (re)initialised and the last committed batch marked. */
  #recovered = false;
  /** The failures since the last good pass were warned about: their end is said at info. */
  #warned = false;
  #known: KnownRefusals;

  constructor(opts: PartitionTaskOptions) {
    this.partition = opts.partition;
    this.#o = opts;
    this.#known = new KnownRefusals(opts.clock ?? systemClock);
    this.#loop = new BackgroundLoop({
      name: `partition ${opts.partition}`,
      log: opts.log,
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      intervalMs: opts.pollMs,
      pass: () => this.#pass(),
      failed: (err, failures) => this.#failed(err, failures),
      recovered: (failures) => {
        // Said at the level its failure was: an info line about a failure only debug told of (a new
        // cluster's first InitProducerId, answered NOT_COORDINATOR while Kafka makes its transaction
        // log) read as the end of an outage nobody was warned of.
        opts.log[this.#warned ? 'info' : 'debug']('publishing resumed', { partition: opts.partition, after_failures: failures });
        this.#warned = false;
      },
    });
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  start(): void {
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  /**
   * The last pass left pending rows that time alone makes publishable: a tenant out of tokens or
   * behind an open breaker, a row waiting for its retry or for an older transaction to end. No
   * insert will wake the task for them, so the processor's poll does, each time.
   */
  get held(): boolean {
    return this.#held;
  }

  /** Its last pass failed: it waits out its backoff. */
  get failing(): boolean {
    return this.#loop.failures > 0;
  }

  /**
   * Lets the batch in flight finish (committed, or aborted on failure), then closes the producer.
   * Against a broker that accepts and never answers, a call would wait for the client's timeout
   * and retries: past a short grace the producer is closed under it, so the call fails at once.
   */
  async stop(): Promise<void> {
    const grace = setTimeout(() => void this.#o.producer.close().catch(() => {}), STOP_GRACE_MS);
    try {
      await this.#loop.stop();
    } finally {
      clearTimeout(grace);
    }
    // What it failed to mark, the next owner marks from the progress record.
    await this.#marked().catch(() => {});
    await this.#o.producer.close().catch(() => {});
  }

  async #pass(): Promise<'more' | 'idle'> {
    if (!this.#recovered) await this.#recover();
    if (this.#markingFailed) await this.#marked();
    if (this.#unmarked.length > 0 && this.#marking === undefined) await this.#markUnmarked();
    const { claimed, drained } = await this.#step();
    this.#lastError = undefined;
    return claimed === 0 || (drained && this.#o.insertsWake === true) ? 'idle' : 'more';
  }

  #failed(err: unknown, failures: number): number | 'stop' {
    const { log, partition } = this.#o;
    // Stopping ends connections under a batch in flight, and a partition given up (Kafka unreachable,
    // a rebalance) is no longer held when its last pass fails: neither is a failure worth a line.
    if (this.#loop.signal.aborted) return 'stop';
    if (fenced(err)) {
      // Also when Kafka aborted the task's open transaction past its timeout (a broker that hung longer):
      // the producer is fenced the same way. The cause is in the error; the partition is taken again.
      log.warn('partition fenced (a newer owner, its lock lost, or its transaction timed out in Kafka); stopping its task', {
        partition,
        error: describeKafkaError(err),
      });
      this.#o.onFenced(partition);
      void this.#o.producer.close().catch(() => {});
      return 'stop';
    }
    this.#lastError = describeKafkaError(err);
    // A cluster outage is logged once by KafkaHealth, not per partition, and its partitions are given
    // up within seconds; other failures the first time and then every tenth. A partition that keeps
    // failing for a reason classed transient while it is still held (ten in a row: ~20 s of backoff)
    // is no outage of the cluster's: it is warned about too, or its rows would wait without a word.
    if (failures === 1 || failures % 10 === 0) {
      const level = classifyFailure(err) === 'transient' && failures < 10 ? 'debug' : 'warn';
      this.#warned ||= level === 'warn';
      log[level]('publish failed; rows stay pending', { partition, error: this.#lastError, failures });
    }
    this.#o.metrics.publishFailures.inc({ reason: failureReason(err) });
    return backoffMs(failures, 100, MAX_LOOP_BACKOFF_MS);
  }

  /**
   * Takes the partition's transactional id (fencing any earlier holder and finishing its open
   * transaction) and marks sent what the last committed batch held. Returns that batch as
   * `id.replays` strings. Never when the lock is gone: initialising would fence the rightful owner.
   */
  async #recover(): Promise<Set<string>> {
    if (!(await this.#o.stillOwned())) throw new SluiceError('partition_lost', 'the partition lock is no longer held');
    await this.#o.producer.init();
    let refs: PublishedRef[] = [];
    if (this.#o.lastCommitted !== undefined) {
      refs = await this.#o.lastCommitted();
      const marked = await this.#o.outbox.markPublished(refs);
      if (marked > 0) {
        this.#o.log.info('marked sent what the last committed batch held', { partition: this.partition, rows: marked });
      }
    }
    this.#recovered = true;
    return new Set(refs.map((r) => `${r.id}.${r.replays}`));
  }

  async #markUnmarked(): Promise<void> {
    await this.#o.outbox.markPublished(this.#unmarked);
    this.#unmarked = [];
  }

  /** Starts marking a committed batch; the next batch's claim and send do not wait for it. */
  #startMarking(rows: readonly ClaimedRow[]): void {
    const refs = rows.map((r) => ({ id: r.id, replays: r.replays }));
    this.#unmarked = refs;
    this.#markingRanges = idRanges(rows);
    this.#marking = this.#o.outbox.markPublished(refs).then(
      () => {
        if (this.#unmarked === refs) {
          this.#unmarked = [];
          this.#markingRanges = new Map();
        }
        return undefined;
      },
      (err: unknown) => {
        // Also when no new rows would wake the task: its rows must not stay pending.
        this.#markingFailed = true;
        this.#loop.wake();
        return err;
      },
    );
  }

  /** Waits for the marking in flight; rejects with its error (the rows stay in #unmarked). */
  async #marked(): Promise<void> {
    const marking = this.#marking;
    if (marking === undefined) return;
    const err = await marking;
    if (this.#marking === marking) {
      this.#marking = undefined;
      this.#markingRanges = new Map();
      this.#markingFailed = false;
    }
    if (err !== undefined) throw err;
  }

  /**
   * One batch: how many rows were claimed (0 = nothing to do now), and whether they were all that
   * was due: every tenant with tokens had a grant and got fewer rows than it, none left out for the
   * byte limit.
   */
  async #step(): Promise<{ claimed: number; drained: boolean }> {
    const { outbox, partition, controls, tenants, metrics, batchSize } = this.#o;
    const none = { claimed: 0, drained: true };
    const waiting = await outbox.pendingTenants(partition);
    this.#held = waiting.length > 0;
    if (waiting.length === 0) return none;
    const claimants: Claimant[] = [];
    for (const tenant of roundRobin(waiting, this.#lastTenant)) {
      if (!controls.allows(tenant)) continue;
      const tokens = controls.available(tenant);
      if (tokens < 1) {
        metrics.quotaThrottled.inc({ tenant: tenants.metricLabel(tenant) });
        continue;
      }
      claimants.push({ tenant, tokens });
    }
    const grants = allocate(claimants, batchSize);
    if (grants.size === 0) return none;
    // Moves on even when the granted tenants have nothing due (retry backoff): the next round starts
    // after them, so they cannot keep the batch to themselves.
    this.#lastTenant = [...grants.keys()].at(-1);
    const { rows: claimed, cutByBytes, held } = await this.#claim(grants);
    // Nothing claimed of tenants that have pending rows: not due yet, or in the batch being marked.
    this.#held = claimants.length < waiting.length || held || claimed.length === 0;
    // A tenant whose grant was all its tokens and whose rows filled it had more waiting: the quota held them back.
    const bounded = claimants.filter((c) => (grants.get(c.tenant) ?? 0) > 0 && grants.get(c.tenant) === Math.floor(c.tokens));
    if (bounded.length > 0) {
      const counts = new Map<string, number>();
      for (const r of claimed) counts.set(r.tenant_id, (counts.get(r.tenant_id) ?? 0) + 1);
      for (const c of bounded) if (counts.get(c.tenant) === grants.get(c.tenant)) metrics.quotaThrottled.inc({ tenant: tenants.metricLabel(c.tenant) });
    }
    this.#cutByBytes = cutByBytes;
    if (claimed.length === 0) return none;
    const rows = await this.#refuseKnown(claimed);
    if (rows.length > 0) await this.#publish(rows);
    // A breaker this batch opened holds the tenant's later rows until it half-opens: time again.
    this.#held ||= [...grants.keys()].some((t) => controls.breakerState(t) !== 'closed');
    return { claimed: claimed.length, drained: !cutByBytes && grants.size === claimants.length && drainedAll(claimed, grants) };
  }

  /**
   * The granted rows, up to the batch's byte limit, without those of the batch being marked: they
   * are still pending in Postgres until the marking commits, so the claim passes over their ids.
   * After a full batch, or one the byte limit cut short (a backlog, where the batch rate, not one
   * row's wait, counts) the marking is waited for instead.
   */
  async #claim(grants: ReadonlyMap<string, number>): Promise<Claimed> {
    const { outbox, partition, batchSize, batchBytes } = this.#o;
    if (this.#marking !== undefined && (this.#unmarked.length >= batchSize || this.#cutByBytes)) await this.#marked();
    return outbox.claimRows(partition, grants, { maxBytes: batchBytes, ...(this.#marking !== undefined ? { skip: this.#markingRanges } : {}) });
  }

  /**
   * Rows whose topic breaks the topic rule (ingest refuses them, but a row can come from an old
   * journal or straight from SQL) are dead at once and never reach the Kafka client: some such names
   * (`__consumer_offsets`) crash it instead of failing. So are rows Kafka lately refused alike (a
   * refused name, a record over its topic's size limit: KnownRefusals), uncharged. Returns the others.
   */
  async #refuseKnown(rows: ClaimedRow[]): Promise<ClaimedRow[]> {
    // Asked once per topic, not per row: a batch holds few topics.
    const problems = new Map<string, string | undefined>();
    const problem = (topic: string): string | undefined => {
      if (!problems.has(topic)) problems.set(topic, this.#o.topicProblem(topic));
      return problems.get(topic);
    };
    const live: ClaimedRow[] = [];
    const dead = new Map<string, { rows: ClaimedRow[]; msg: string }>();
    for (const r of rows) {
      const ruled = problem(r.topic);
      let reason = ruled === undefined ? undefined : `topic ${r.topic} ${ruled}`;
      let msg = 'record refused by the topic rule; marked dead';
      if (reason === undefined && !this.#known.empty) {
        reason = this.#known.reason(r.topic, () => recordBatchBytes(r));
        msg = 'record refused as Kafka refused its topic or size lately; marked dead';
      }
      if (reason === undefined) {
        live.push(r);
        continue;
      }
      const entry = dead.get(reason) ?? { rows: [], msg };
      entry.rows.push(r);
      dead.set(reason, entry);
    }
    for (const [error, { rows: these, msg }] of dead) await this.#bury(these, error, msg);
    return live;
  }

  /**
   * After `row`, sent alone, was refused for its size: its topic's limit, remembered when it explains
   * the verdict (one read after an operator raised it does not) and the cluster says it plainly.
   */
  async #learnSizeLimit(row: ClaimedRow): Promise<void> {
    const limit = await this.#o.producer.topicSizeLimit(row.topic);
    if (limit !== undefined && recordBatchBytes(row) > limit) this.#known.sizeLimit(row.topic, limit);
  }

  /** A topic the broker confirmed it refuses: its rows dead, uncharged, and later ones for a minute (KnownRefusals). */
  async #buryRefused(rows: ClaimedRow[], topic: string, refusal: string): Promise<void> {
    this.#known.refusedName(topic, refusal);
    await this.#bury(rows, refusedByKafka(topic, refusal), 'topic refused by Kafka for good; its records marked dead');
  }

  /** Marks rows dead for good with their reason, counted and logged per tenant. */
  async #bury(rows: ClaimedRow[], error: string, msg: string): Promise<void> {
    const { outbox, metrics, tenants, log } = this.#o;
    for (const [tenant, mine] of groupByTenant(rows)) {
      const dead = await outbox.markDead(mine.map((r) => r.id), error);
      metrics.dead.inc({ tenant: tenants.metricLabel(tenant) }, dead);
      log.warn(msg, { tenant, outbox_ids: mine.slice(0, 10).map((r) => r.id), rows: mine.length, error });
    }
  }

  /**
   * Publishes a batch. When Kafka refuses it, each tenant's rows are published on their own, so one
   * tenant's failure costs another tenant one extra transaction, however many topics or rows the
   * culprit has; only a failing tenant's rows are then split further (#tenantFailed). If every tenant
   * fails alike for a reason that is not a record's, that is the cluster's (or sluice's own progress
   * topic's) problem: nobody is charged and the task backs off.
   */
  async #publish(rows: ClaimedRow[]): Promise<void> {
    const failure = await this.#attempt(rows);
    if (failure === undefined) return;
    const byTenant = groupByTenant(rows);
    if (byTenant.size === 1) {
      // Topics the client just auto-created fail alike at first; the whole batch is tried again
      // after the backoff rather than one transaction per topic.
      if (failure.kind === 'transient') throw failure;
      await this.#tenantFailed(rows, failure, true);
      return;
    }
    const failed: [ClaimedRow[], KafkaError][] = [];
    for (const mine of byTenant.values()) {
      const f = await this.#attempt(mine);
      if (f !== undefined) failed.push([mine, f]);
    }
    const [first] = failed;
    if (first !== undefined && failed.length === byTenant.size && failed.every(([, f]) => notRecords(f))) throw first[1];
    for (const [mine, f] of failed) await this.#tenantFailed(mine, f, false);
  }

  /**
   * One tenant's rows failed together. The topics among them the broker confirms it refuses (asked
   * for all at once: kafka/topic-refusals.ts) make their rows dead, uncharged to the tenant's
   * breaker: that verdict is on a name, settled in one request however many topics, and says nothing
   * of whether Kafka takes the tenant's other writes (an outside tester's tenant, whose topic names
   * another had squatted under ./_, had its breaker opened and its good writes held a minute a
   * probe). The rest is published once more, then per topic
   * so only the culprit topic is charged, until the tenant's breaker opens: its remaining rows then
   * wait, uncharged, like any tenant's behind an open breaker. `alone`: the tenant's rows were the
   * whole batch, so if its topics fail alike for a reason that is not a record's (up to
   * MAX_UNCHARGED_GROUPS of them, none published) it is the cluster's problem, as in #publish.
   */
  async #tenantFailed(rows: ClaimedRow[], failure: KafkaError, alone: boolean): Promise<void> {
    const tenant = rows[0]?.tenant_id ?? '';
    const allows = (): boolean => this.#o.controls.allows(tenant);
    let rest = rows;
    let last: KafkaError | undefined = failure;
    if (failure.kind === 'refused') {
      const refusals = await this.#o.producer.topicRefusals([...new Set(rows.map((r) => r.topic))]);
      if (refusals.size > 0) {
        for (const [topic, dead] of groupBy(rows.filter((r) => refusals.has(r.topic)), (r) => r.topic)) {
          await this.#buryRefused(dead, topic, refusals.get(topic) ?? '');
        }
        rest = rows.filter((r) => !refusals.has(r.topic));
      }
      // The broker takes the other topics now (auto-created meanwhile, say): they go together once more.
      last = rest.length > 0 && allows() ? await this.#attempt(rest) : undefined;
    }
    if (last === undefined) return;
    const byTopic = groupBy(rest, (r) => r.topic);
    if (byTopic.size === 1) {
      await this.#groupFailed(rest, last);
      return;
    }
    const held: [ClaimedRow[], KafkaError][] = [];
    let published = false;
    for (const group of byTopic.values()) {
      if (!allows()) return;
      const f = await this.#attempt(group);
      if (f === undefined) {
        published = true;
        for (const [g, h] of held.splice(0)) await this.#groupFailed(g, h);
      } else if (alone && !published && notRecords(f)) {
        held.push([group, f]);
        if (held.length >= MAX_UNCHARGED_GROUPS) throw f;
      } else {
        await this.#groupFailed(group, f);
      }
    }
    const [first] = held;
    if (first !== undefined) throw first[1];
  }

  /** Publishes and marks; a tenant-attributable failure is returned, anything else thrown. */
  async #attempt(rows: ClaimedRow[]): Promise<KafkaError | undefined> {
    const { metrics, producer, tenants, controls } = this.#o;
    const started = performance.now();
    let unmarked = false;
    try {
      await producer.publish(rows, async () => {
        try {
          await this.#marked();
        } catch (err) {
          unmarked = true;
          throw err;
        }
      });
    } catch (err) {
      // The previous batch could not be marked (Postgres): this one was aborted, nobody is charged,
      // and the pass fails; the next one marks that batch before anything else.
      if (unmarked) throw err;
      // The producer rejects with a KafkaError already (returned as is); anything else is classified the same way.
      const failure = kafkaError(err);
      if (failure.kind === 'fenced') throw failure;
      // The producer was replaced, and whether its last commit went through is not known (a lost
      // response, a timeout): recover as a new owner would before anything is published again.
      this.#recovered = false;
      const committed = await this.#recover();
      if (rows.length > 0 && rows.every((r) => committed.has(`${r.id}.${r.replays}`))) {
        this.#o.log.info('a commit reported as failed had gone through; its rows are marked sent', { partition: this.partition, rows: rows.length });
      } else {
        metrics.transactions.inc({ result: 'aborted' });
        return failure;
      }
    }
    metrics.transactions.inc({ result: 'committed' });
    metrics.publishLatency.observe((performance.now() - started) / 1000);
    metrics.publishBatchSize.observe(rows.length);
    this.#startMarking(rows);
    for (const [tenant, mine] of groupByTenant(rows)) {
      // Tokens pay for what was published, so an outage does not use up a tenant's quota.
      controls.take(tenant, mine.length);
      controls.success(tenant);
      metrics.published.inc({ tenant: tenants.metricLabel(tenant) }, mine.length);
    }
    return undefined;
  }

  /**
   * One tenant's rows for one topic failed. A topic the broker confirms it refuses makes them dead
   * with its reason; records Kafka refuses for good are found one by one and go dead at once;
   * otherwise every row is retried later with backoff, dead once out of attempts.
   */
  async #groupFailed(rows: ClaimedRow[], failure: KafkaError): Promise<void> {
    const { outbox, controls, metrics, tenants, log, maxAttempts, retryBaseMs, retryMaxMs } = this.#o;
    const tenant = rows[0]?.tenant_id ?? '';
    const label = tenants.metricLabel(tenant);
    const { kind, message: error } = failure;
    if (kind === 'refused') {
      const topic = rows[0]?.topic ?? '';
      const refusal = (await this.#o.producer.topicRefusals([topic])).get(topic);
      if (refusal !== undefined) {
        await this.#buryRefused(rows, topic, refusal);
        return;
      }
      // Not refused: a topic the broker was still creating (topicRefusals waited for it) takes the
      // rows now, uncharged; one it could create but does not (auto-creation off) is charged below.
      if ((await this.#attempt(rows)) === undefined) return;
    }
    if (kind === 'record') {
      if (rows.length === 1) {
        controls.failure(tenant);
        await this.#bury(rows, error, 'record rejected by Kafka for good; marked dead');
        if (rows[0] !== undefined && failure.kafkaCodes.some((c) => SIZE_CODES.has(c))) await this.#learnSizeLimit(rows[0]);
        return;
      }
      // Which records? Each is tried alone; only those verdicts count for the breaker. A record too
      // large alone gives the topic's size limit: the group's records over it die at once with it, as
      // one verdict, and later claims' before they are sent (KnownRefusals). A flood of them died one
      // a transaction, then one a breaker probe once three had opened it (outside tester: ~2,950
      // rows, the tenant's later writes held for what would have been days).
      const condemned = new Set<ClaimedRow>();
      for (const [i, row] of rows.entries()) {
        if (condemned.has(row)) continue;
        if (!controls.allows(tenant)) return;
        const failed = await this.#attempt([row]);
        if (failed === undefined) continue;
        await this.#groupFailed([row], failed);
        // A row waiting for its retry holds the later ones back: they must not overtake it.
        if (failed.kind !== 'record') return;
        const limit = this.#known.limit(row.topic);
        if (limit === undefined) continue;
        const over = rows.slice(i + 1).filter((r) => !condemned.has(r) && recordBatchBytes(r) > limit);
        for (const r of over) condemned.add(r);
        if (over.length > 0) await this.#bury(over, tooLarge(row.topic, limit), 'records over their topic\'s size limit; marked dead');
      }
      return;
    }
    controls.failure(tenant);
    const dead = await outbox.recordFailure(
      rows.map((r) => ({ id: r.id, delayMs: backoffMs(r.attempts + 1, retryBaseMs, retryMaxMs) })),
      error,
      maxAttempts,
    );
    metrics.publishRetries.inc({ tenant: label }, rows.length - dead.length);
    metrics.dead.inc({ tenant: label }, dead.length);
    log.warn('publish failed for a tenant; rows will be retried', { tenant, topic: rows[0]?.topic, rows: rows.length, dead: dead.length, error });
  }
}

/** Each granted tenant got fewer rows than its grant: it had no more that were due. */
function drainedAll(claimed: readonly ClaimedRow[], grants: ReadonlyMap<string, number>): boolean {
  const counts = new Map<string, number>();
  for (const r of claimed) counts.set(r.tenant_id, (counts.get(r.tenant_id) ?? 0) + 1);
  for (const [tenant, grant] of grants) if ((counts.get(tenant) ?? 0) >= grant) return false;
  return true;
}

function groupBy(rows: readonly ClaimedRow[], key: (row: ClaimedRow) => string): Map<string, ClaimedRow[]> {
  const groups = new Map<string, ClaimedRow[]>();
  for (const row of rows) {
    const k = key(row);
    const group = groups.get(k);
    if (group === undefined) groups.set(k, [row]);
    else group.push(row);
  }
  return groups;
}

/** Each tenant's lowest and highest id among `rows`. */
function idRanges(rows: readonly ClaimedRow[]): Map<string, IdRange> {
  const ranges = new Map<string, IdRange>();
  for (const r of rows) {
    const range = ranges.get(r.tenant_id);
    if (range === undefined) ranges.set(r.tenant_id, { from: r.id, to: r.id });
    else if (idBefore(r.id, range.from)) range.from = r.id;
    else if (idBefore(range.to, r.id)) range.to = r.id;
  }
  return ranges;
}

/** Whether id `a` is below id `b`: both digits without leading zeros. */
function idBefore(a: string, b: string): boolean {
  return a.length < b.length || (a.length === b.length && a < b);
}

function groupByTenant(rows: readonly ClaimedRow[]): Map<string, ClaimedRow[]> {
  return groupBy(rows, (r) => r.tenant_id);
}
