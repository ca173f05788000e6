import { Admin, Consumer, FetchIsolationLevels, MessagesStreamModes, stringDeserializers } from '@platformatic/kafka';
import type { PublishedRef } from '../outbox/claims.ts';
import { errorCodes } from './kafka-errors.ts';

/**
 * The progress record: each exactly-once batch is one Kafka transaction holding the records and one
 * progress record naming the outbox rows it published as `id.replays` pairs, in the progress topic's
 * partition of the same number. A new owner of a partition reads the last committed one and marks
 * those rows sent, so a crash between the Kafka commit and the Postgres update publishes nothing twice.
 *
 * The key is the partition's transactional id (`<prefix>-p<partition>`), not just `p<partition>`:
 * outbox ids mean something only in their own database, so deployments that share a Kafka cluster
 * (each with its own prefix) must never read each other's progress.
 */
export function progressKey(transactionalIdPrefix: string, partition: number): string {
  return `${transactionalIdPrefix}-p${partition}`;
}

export function encodeProgress(refs: readonly PublishedRef[]): string {
  return refs.map((r) => `${r.id}.${r.replays}`).join(',');
}

export function decodeProgress(value: string): PublishedRef[] {
  if (value.length === 0) return [];
  return value.split(',').map((pair) => {
    const m = /^(\d+)\.(\d+)$/.exec(pair);
    if (m?.[1] === undefined || m[2] === undefined) throw new Error(`malformed progress record entry "${pair}"`);
    return { id: m[1], replays: Number(m[2]) };
  });
}

/**
 * Creates the compacted progress topic with one partition per outbox partition, or grows it when
 * SLUICE_PARTITIONS was raised. Short segments let compaction keep it to about one record a key.
 */
export async function ensureProgressTopic(brokers: string[], topic: string, partitions: number, clientId: string): Promise<void> {
  const admin = new Admin({ clientId: `${clientId}-progress-admin`, bootstrapBrokers: brokers, retries: 3, retryDelay: 200 });
  try {
    const existing = await admin.metadata({ topics: [topic] }).catch(() => undefined);
    const count = existing?.topics.get(topic)?.partitionsCount;
    if (count === undefined) {
      await admin
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
        .catch((err: unknown) => {
          // Another instance created it first.
          if (!errorCodes(err).includes('TOPIC_ALREADY_EXISTS')) throw err;
        });
    } else if (count < partitions) {
      await admin.createPartitions({ topics: [{ name: topic, count: partitions }] });
    }
  } finally {
    await admin.close();
  }
}

/**
 * Reads the last committed progress record of partitions with one long-lived read_committed
 * consumer. Calls made while a read is running are served together by the next one: a new owner
 * takes over many partitions at once, and one fetch over all of them beats one consumer each.
 */
export class ProgressReader {
  #consumer: Consumer<string, string, string, string>;
  #topic: string;
  #prefix: string;
  #queued = new Map<number, PromiseWithResolvers<PublishedRef[]>>();
  #running: Promise<void> | undefined;

  constructor(brokers: string[], topic: string, transactionalIdPrefix: string, clientId: string) {
    this.#topic = topic;
    this.#prefix = transactionalIdPrefix;
    this.#consumer = new Consumer<string, string, string, string>({
      clientId: `${clientId}-progress-reader`,
      groupId: `${clientId}-progress-reader-${Bun.randomUUIDv7()}`,
      bootstrapBrokers: brokers,
      deserializers: stringDeserializers,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      autocommit: false,
      maxWaitTime: 50,
      retries: 3,
      retryDelay: 200,
    });
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

  async close(): Promise<void> {
    await this.#running;
    await this.#consumer.close(true);
  }

  async #drain(): Promise<void> {
    // Let the other partitions acquired in the same rebalance queue up.
    await Bun.sleep(5);
    while (this.#queued.size > 0) {
      const batch = new Map(this.#queued);
      this.#queued.clear();
      try {
        const found = await this.#readLast([...batch.keys()]);
        for (const [p, request] of batch) request.resolve(decodeProgress(found.get(p) ?? ''));
      } catch (err) {
        for (const request of batch.values()) request.reject(err);
      }
    }
    this.#running = undefined;
  }

  /**
   * Reads backwards from each partition's last stable offset in growing windows: every transaction
   * adds one progress record and one marker, so the newest committed record is normally within the
   * last few offsets.
   */
  async #readLast(partitions: number[]): Promise<Map<number, string>> {
    const topic = this.#topic;
    const offsets = await this.#consumer.listOffsets({
      topics: [topic],
      partitions: { [topic]: partitions },
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    const stable = new Map(partitions.map((p) => [p, offsets.get(topic)?.[p] ?? 0n]));
    const found = new Map<number, string>();
    let open = partitions.filter((p) => (stable.get(p) ?? 0n) > 0n);
    for (let window = 16n; open.length > 0; window *= 4n) {
      const ranges = open.map((p) => {
        const to = stable.get(p) ?? 0n;
        return { partition: p, from: to > window ? to - window : 0n, to };
      });
      const last = await this.#lastValues(ranges);
      for (const [p, value] of last) found.set(p, value);
      open = ranges.filter((r) => !last.has(r.partition) && r.from > 0n).map((r) => r.partition);
    }
    return found;
  }

  async #lastValues(ranges: { partition: number; from: bigint; to: bigint }[]): Promise<Map<number, string>> {
    const topic = this.#topic;
    const stream = await this.#consumer.consume({
      topics: [topic],
      mode: MessagesStreamModes.MANUAL,
      offsets: ranges.map((r) => ({ topic, partition: r.partition, offset: r.from })),
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: 50,
    });
    // Aborted records and transaction markers are never delivered, so a partition is done when the
    // stream's next fetch offset reaches its last stable offset, not when a record at `to - 1` arrives.
    const done = (): boolean => ranges.every((r) => (stream.offsetsToFetch.get(`${topic}:${r.partition}`) ?? 0n) >= r.to);
    const timer = setInterval(() => {
      if (done()) void stream.close();
    }, 10);
    const last = new Map<number, string>();
    const wanted = new Map(ranges.map((r) => [r.partition, r]));
    try {
      for await (const m of stream) {
        const range = wanted.get(m.partition);
        if (range !== undefined && m.offset < range.to && m.key === progressKey(this.#prefix, m.partition)) last.set(m.partition, m.value);
      }
    } finally {
      clearInterval(timer);
      await stream.close().catch(() => {});
    }
    return last;
  }
}
