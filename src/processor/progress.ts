import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { CommittedReader } from '../kafka/committed-records.ts';
import type { PublishedRef } from '../outbox/outbox.ts';
import type { Logger } from '../log.ts';
import { describeKafkaError, errorCodes } from '../kafka/errors.ts';
import { systemClock } from '../core/clock.ts';
import { SluiceError } from '../errors.ts';

/**
 * The progress record: each exactly-once batch is one Kafka transaction holding the records and one
 * progress record naming the outbox rows it published as `id.replays` pairs, in the progress topic's
 * partition of the same number. A new owner of a partition reads the last committed one and marks
 * those rows sent, so a crash between the Kafka commit and the Postgres update publishes nothing twice.
 *
 * The key is the partition's transactional id and the outbox's identity
 * (`<prefix>-p<partition>@<outbox uuid>`): outbox ids mean something only in their own database, so
 * deployments that share a Kafka cluster, and a database rebuilt after a disaster that publishes with
 * the old prefix, never act on each other's progress, and compaction never drops one outbox's last
 * record for another's.
 */
export function progressKey(transactionalIdPrefix: string, partition: number, outboxIdentity: string): string {
  return `${partitionKeyPrefix(transactionalIdPrefix, partition)}@${outboxIdentity}`;
}

/** What every progress key of this prefix and partition starts with, whichever outbox wrote it. */
function partitionKeyPrefix(transactionalIdPrefix: string, partition: number): string {
  return `${transactionalIdPrefix}-p${partition}`;
}

export function encodeProgress(refs: readonly PublishedRef[]): string {
  return refs.map((r) => `${r.id}.${r.replays}`).join(',');
}

export function decodeProgress(value: string): PublishedRef[] {
  if (value.length === 0) return [];
  return value.split(',').map((pair) => {
    const m = /^(\d+)\.(\d+)$/.exec(pair);
    if (m?.[1] === undefined || m[2] === undefined) throw new SluiceError('progress_corrupt', `malformed progress record entry "${pair}"`);
    return { id: m[1], replays: Number(m[2]) };
  });
}

/**
 * Creates the compacted progress topic with one partition per outbox partition, or grows it when
 * SLUICE_PARTITIONS was raised. Short segments let compaction keep it to about one record a key.
 *
 * It lists the cluster's topics rather than asking for this one's metadata: the client retries a
 * metadata request for a topic the cluster does not have (~0.6 s at this admin's retries), which a
 * first start on a new cluster paid before its first publication (the list costs a look at every
 * topic's metadata, once a start). Existing, it is not asked to be created: a principal allowed to
 * describe and write it need not be allowed to create topics.
 *
 * Found, or grown, it is made sure of only once the metadata shows the count needed (see
 * `pollPartitions`); created here, with that count, it returns at once, and the reader's `prepare`
 * waits for its leaders. Found, its cleanup policy is returned, for the caller to warn when it does
 * not compact: sluice does not change the settings of a topic it did not create.
 */
export async function ensureProgressTopic(
  brokers: string[],
  topic: string,
  partitions: number,
  clientId: string,
  signal?: AbortSignal,
): Promise<FoundProgressTopic | undefined> {
  const admin = new Admin({ clientId: `${clientId}-progress-admin`, bootstrapBrokers: brokers, retries: 3, retryDelay: 200 });
  // Asks the metadata without the client's retries (pollPartitions retries, at a shorter interval).
  let probe: Admin | undefined;
  const shown = (atLeast: number, growRefused?: unknown): Promise<number> =>
    pollPartitions((probe ??= new Admin({ clientId: `${clientId}-progress-probe`, bootstrapBrokers: brokers, retries: 0 })), topic, atLeast, signal, growRefused);
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      const created = await admin
        .createTopics({
          topics: [topic],
          partitions,
          replicas: -1,
          configs: [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'segment.ms', value: '600000' },
            { name: 'min.cleanable.dirty.ratio', value: '0.1' },
          ],
        })
        .then(
          () => true,
          (err: unknown) => {
            // Another instance created it first, perhaps with fewer partitions: grown below.
            if (!errorCodes(err).includes('TOPIC_ALREADY_EXISTS')) throw err;
            return false;
          },
        );
      if (created) return undefined;
    }
    const [policy, count] = await Promise.all([cleanupPolicy(admin, topic), shown(1)]);
    const found = { cleanupPolicy: policy };
    if (count >= partitions) return found;
    const growRefused = await admin.createPartitions({ topics: [{ name: topic, count: partitions }] }).then(
      () => undefined,
      (err: unknown) => {
        // The broker refuses a count no larger than the topic's: another instance raised it at the
        // same time, to as many or more, which the wait below sees (or times out naming this error).
        if (!errorCodes(err).includes('INVALID_PARTITIONS')) throw err;
        return err;
      },
    );
    await shown(partitions, growRefused);
    return found;
  } finally {
    await Promise.all([admin.close(), probe?.close()]);
  }
}

/** A progress topic that was there already (not created by this call). */
export interface FoundProgressTopic {
  /** `cleanup.policy`, or undefined when it could not be read (not authorized to describe, say). */
  cleanupPolicy: string | undefined;
}

/** Read for a warning only: a failure to read it never fails the start. */
async function cleanupPolicy(admin: Admin, topic: string): Promise<string | undefined> {
  try {
    const [described] = await admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['cleanup.policy'] }] });
    return described?.configs.find((c) => c.name === 'cleanup.policy')?.value ?? undefined;
  } catch {
    return undefined;
  }
}

/** How long the metadata may take to show a topic as created or grown before that counts as failed (seen: 0.4 s). */
const SHOWN_WITHIN_MS = 10_000;
const SHOWN_POLL_MS = 20;

/**
 * Waits until the metadata shows the topic with at least `atLeast` partitions, and returns its count.
 * The controller answers a create or a grow before the broker's metadata shows it (up to 0.4 s seen on
 * one broker): read at once, a topic another instance has just created is unknown (the create's
 * TOPIC_ALREADY_EXISTS came first), and one just grown shows its old count, which a caller took for
 * the topic's (CI). Any failure but a refusal of authorization is taken for "not yet": a partition
 * without a leader fails the whole metadata request. What it waits for is the view of the one broker
 * it asks, the bootstrap broker the processor's own clients ask first.
 */
async function pollPartitions(admin: Admin, topic: string, atLeast: number, signal: AbortSignal | undefined, growRefused: unknown): Promise<number> {
  const deadline = Date.now() + SHOWN_WITHIN_MS;
  let count = 0;
  let lastError: unknown = growRefused;
  for (;;) {
    if (signal?.aborted === true) throw new SluiceError('shutting_down', `stopped while waiting for the progress topic "${topic}" to show ${atLeast} partitions`);
    try {
      count = (await admin.metadata({ topics: [topic], forceUpdate: true })).topics.get(topic)?.partitionsCount ?? 0;
      if (count >= atLeast) return count;
    } catch (err) {
      if (errorCodes(err).some((code) => code.endsWith('_AUTHORIZATION_FAILED'))) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new SluiceError(
        'kafka_unavailable',
        `progress topic "${topic}" shows ${count} partitions ${SHOWN_WITHIN_MS / 1000} s after it was made sure of; it needs ${atLeast}` +
          (lastError === undefined ? '' : ` (last failure: ${describeKafkaError(lastError)})`),
        { cause: lastError },
      );
    }
    await systemClock.sleep(SHOWN_POLL_MS, signal);
  }
}

/**
 * Reads the last committed progress record of partitions. Calls made while a read is running are
 * served together by the next one: a new owner takes over many partitions at once.
 */
export class ProgressReader {
  #reader: CommittedReader;
  #topic: string;
  #prefix: string;
  #identity: string;
  #log: Logger;
  #foreignLogged = new Set<string>();
  #queued = new Map<number, PromiseWithResolvers<PublishedRef[]>>();
  #running: Promise<void> | undefined;

  constructor(opts: { brokers: string[]; topic: string; transactionalIdPrefix: string; outboxIdentity: string; clientId: string; log: Logger }) {
    const { brokers, clientId } = opts;
    this.#topic = opts.topic;
    this.#prefix = opts.transactionalIdPrefix;
    this.#identity = opts.outboxIdentity;
    this.#log = opts.log;
    this.#reader = new CommittedReader(brokers, `${clientId}-progress-reader`);
  }

  /** The rows named by the last committed progress record of `partition`, or [] when there is none. */
  read(partition: number): Promise<PublishedRef[]> {
    let request = this.#queued.get(partition);
    if (request === undefined) {
      request = Promise.withResolvers<PublishedRef[]>();
      this.#queued.set(partition, request);
    }
    this.#running ??= this.#drain();
    return request.promise;
  }

  /**
   * Connects and asks for the end of each partition, answered once every partition has a leader (a
   * topic just created has none for a moment): the reads that follow each task's fence then wait
   * only for their own requests. What it learns is not used: a read must come after the fence.
   */
  async prepare(partitions: number): Promise<void> {
    await this.#reader.endOffsets(this.#topic, [...Array(partitions).keys()]);
  }

  async close(): Promise<void> {
    await this.#running;
    await this.#reader.close();
  }

  async #drain(): Promise<void> {
    // Let the other partitions acquired in the same rebalance queue up for one offsets request.
    await Bun.sleep(5);
    while (this.#queued.size > 0) {
      const batch = new Map(this.#queued);
      this.#queued.clear();
      try {
        const ends = await this.#reader.endOffsets(this.#topic, [...batch.keys()]);
        await Promise.all(
          [...batch].map(async ([p, request]) => {
            try {
              request.resolve(decodeProgress((await this.#lastValue(p, ends.get(p) ?? 0n)) ?? ''));
            } catch (err) {
              request.reject(err);
            }
          }),
        );
      } catch (err) {
        for (const request of batch.values()) request.reject(err);
      }
    }
    this.#running = undefined;
  }

  /**
   * Reads backwards from the end in growing windows: every transaction adds one progress record and
   * one marker, so the newest committed record is normally within the last few offsets.
   */
  async #lastValue(partition: number, end: bigint): Promise<string | undefined> {
    const key = progressKey(this.#prefix, partition, this.#identity);
    const shared = partitionKeyPrefix(this.#prefix, partition);
    for (let window = 16n; end > 0n; window *= 4n) {
      const from = end > window ? end - window : 0n;
      const records = await this.#reader.read(this.#topic, partition, from, end);
      for (const r of records) {
        if (r.key !== key && r.key !== null && (r.key === shared || r.key.startsWith(`${shared}@`))) this.#foreign(partition, r.key);
      }
      const last = records.filter((r) => r.key === key).at(-1);
      if (last !== undefined) return last.value ?? '';
      if (from === 0n) return undefined;
    }
    return undefined;
  }

  /** Another outbox's progress under this prefix: ignored, and said once per key. */
  #foreign(partition: number, key: string): void {
    if (this.#foreignLogged.has(key)) return;
    this.#foreignLogged.add(key);
    const other = key.includes('@') ? key.slice(key.indexOf('@') + 1) : undefined;
    this.#log.warn('progress record of another outbox ignored', {
      partition,
      key,
      outbox: this.#identity,
      other_outbox: other ?? 'none (written before progress records named their outbox)',
    });
  }
}
