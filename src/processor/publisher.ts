import type { Compression, Guarantee } from '../core/modes.ts';
import { Producer, type Connection, type MessageToProduce } from '@platformatic/kafka';
import { recordKey } from '../core/record.ts';
import type { ClaimedRow } from '../core/record.ts';
import { errorCodes, kafkaError } from '../kafka/errors.ts';
import { javaCompatiblePartitioner } from '../kafka/partitioner.ts';
import { singleRecordBatchBytes } from '../kafka/record-size.ts';
import { uncompressedSizeLimit } from '../kafka/topic-limits.ts';
import { topicRefusals as askTopicRefusals } from '../kafka/topic-refusals.ts';
import { encodeProgress, progressKey } from './progress.ts';


export interface PublishingOptions {
  brokers: string[];
  clientId: string;
  compression: Compression;
  guarantee: Guarantee;
  transactionalIdPrefix: string;
  progressTopic: string;
  /** Carried in every progress record's key (see progress.ts). */
  outboxIdentity: string;
}

/** Publishes one outbox partition's batches. `init` and `publish` reject with a KafkaError, classified here once. */
export interface PartitionProducer {
  /**
   * Takes the partition's transactional id: fences any earlier owner and aborts its open
   * transaction, so what the progress topic says afterwards is final.
   */
  init(): Promise<void>;
  /**
   * Publishes the rows as one batch and resolves once Kafka acknowledged them: in exactly_once one
   * transaction holding the records and the progress record, committed; in at_least_once one send.
   * `beforeCommit` runs once the records are sent and before the commit; if it rejects, the
   * transaction is aborted and its error rejects `publish` as it is (not as a KafkaError).
   */
  publish(rows: readonly ClaimedRow[], beforeCommit?: () => Promise<void>): Promise<void>;
  /**
   * Asks the cluster about these topics (creating them if the broker auto-creates): the broker's
   * reason for each topic it refuses for good; a topic it takes, is creating or could create (or an
   * unanswered request) is not in the map. See kafka/topic-refusals.ts.
   */
  topicRefusals(topics: readonly string[]): Promise<Map<string, string>>;
  /**
   * The largest record batch `topic` takes, when the broker holds an uncompressed batch as sluice sent
   * it against it (see kafka/topic-limits.ts); undefined when not sure, or when sluice compresses.
   */
  topicSizeLimit(topic: string): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface Publishing {
  readonly guarantee: Guarantee;
  forPartition(partition: number): PartitionProducer;
  close(): Promise<void>;
}

/** Records go to the client as bytes: it has nothing left to serialise (its serializers are the identity). */
type Message = MessageToProduce<Buffer, Buffer, Buffer, Buffer | undefined>;
type BytesProducer = Producer<Buffer, Buffer, Buffer, Buffer | undefined>;

/** The names of sluice's headers, encoded once for every record. */
const HEADER = {
  tenant_id: Buffer.from('tenant_id'),
  dedupe_key: Buffer.from('dedupe_key'),
  outbox_id: Buffer.from('outbox_id'),
  ingested_at: Buffer.from('ingested_at'),
  request_id: Buffer.from('request_id'),
  traceparent: Buffer.from('traceparent'),
  replay: Buffer.from('replay'),
};
const TRUE = Buffer.from('true');

/** As the client's string serializer had it: a value that is not text (a row written by hand) is a null header. */
function textBytes(value: unknown): Buffer | undefined {
  return typeof value === 'string' ? Buffer.from(value) : undefined;
}

/**
 * The Kafka records for a batch of outbox rows: key tenant:dedupe_key, the client's payload text as
 * its bytes (never parsed), the event's headers and then sluice's (a header of the event named like
 * one of sluice's keeps its place and takes sluice's value). The texts are the bytes the claim read
 * (ClaimedRow.bytes), used as they are.
 */
export function toKafkaMessages(rows: readonly ClaimedRow[]): Message[] {
  return rows.map((row) => {
    const { bytes } = row;
    const own: [keyof typeof HEADER, Buffer][] = [
      ['tenant_id', bytes.tenant_id],
      ['dedupe_key', bytes.dedupe_key],
      ['outbox_id', bytes.id],
      ['ingested_at', bytes.ingested_at],
    ];
    if (bytes.request_id !== null) own.push(['request_id', bytes.request_id]);
    if (bytes.traceparent !== null) own.push(['traceparent', bytes.traceparent]);
    if (row.replays > 0) own.push(['replay', TRUE]);
    const headers = new Map<Buffer, Buffer | undefined>();
    const names = Object.keys(row.headers);
    if (names.length === 0) {
      for (const [name, value] of own) headers.set(HEADER[name], value);
    } else {
      // Rare: events with headers of their own. Strings first, so a name sluice sets keeps one place.
      const byName = new Map<string, Buffer | undefined>(names.map((n) => [n, textBytes(row.headers[n])]));
      for (const [name, value] of own) byName.set(name, value);
      for (const [name, value] of byName) headers.set(Object.hasOwn(HEADER, name) ? HEADER[name as keyof typeof HEADER] : Buffer.from(name), value);
    }
    return { topic: row.topic, key: recordKey(bytes.tenant_id, bytes.dedupe_key), value: bytes.payload, headers };
  });
}

/** The bytes of the record batch a row's record makes alone, uncompressed (kafka/record-size.ts). */
export function recordBatchBytes(row: ClaimedRow): number {
  const [m] = toKafkaMessages([row]);
  // toKafkaMessages builds its headers as a Map.
  return singleRecordBatchBytes({ key: m?.key, value: m?.value, headers: (m?.headers ?? new Map()) as Map<Buffer, Buffer | undefined> });
}

const RETRY_DELAY_MS = 10;

/**
 * The producer's wait before it retries a request. A broker answers CONCURRENT_TRANSACTIONS to the
 * next transaction's first request while it still writes the previous commit's markers, which takes
 * it a millisecond or few: that is retried after 1, 2, 4, 8 ms, then every 10 ms. A fixed 10 ms made
 * each transaction wait out more than its markers took (500-record transactions on a warm broker:
 * 10.3-10.7 ms each against 4.5-5.6 ms retried after 1 ms); the client's default of 1 s capped a
 * partition at about one transaction a second. Every other retriable error waits 10 ms.
 */
export function retryDelayMs(_client: object, _operation: string, attempt: number, _retries: number, error: Error): number {
  if (!errorCodes(error).includes('CONCURRENT_TRANSACTIONS')) return RETRY_DELAY_MS;
  return Math.min(RETRY_DELAY_MS, 2 ** (attempt - 1));
}

/**
 * The producer settings every publisher of sluice's records uses (the bench's durable minimum too):
 * exactly-once delivery, the Java client's partitioning, and the retries above.
 */
export const PRODUCER_SETTINGS = {
  idempotent: true,
  acks: -1,
  // The Java client's partitioner: the default one disagrees for partition counts not a power of two.
  partitioner: javaCompatiblePartitioner,
  autocreateTopics: true,
  // With idempotent: true, retries <= 1 would mean "retry forever".
  retries: 20,
  retryDelay: retryDelayMs,
  // Also the transaction timeout: how long a crashed owner's open transaction can hold back
  // read_committed consumers if no new owner aborts it first.
  timeout: 10_000,
} as const;

function newProducer(opts: PublishingOptions, transactionalId: string | undefined): BytesProducer {
  return new Producer<Buffer, Buffer, Buffer, Buffer | undefined>({
    clientId: opts.clientId,
    bootstrapBrokers: opts.brokers,
    compression: opts.compression,
    ...PRODUCER_SETTINGS,
    ...(transactionalId === undefined
      ? {}
      : {
          transactionalId,
          // The client would send InitProducerId with id 0 / epoch 0; -1 / -1 asks the coordinator to
          // resume (and bump the epoch of) whatever producer held this transactional id before.
          producerId: -1n,
          producerEpoch: -1,
        }),
  });
}

/**
 * A producer that is replaced after a failed send. The client counts a sequence number for every
 * record it tried, also for batches the broker refused (MESSAGE_TOO_LARGE, say); the next send to
 * that partition then fails with OUT_OF_ORDER_SEQUENCE_NUMBER forever. A new producer (for a
 * transactional id: the same id, next epoch) starts its sequences afresh.
 */
class ProducerSlot {
  #make: () => BytesProducer;
  #current: BytesProducer | undefined;

  constructor(make: () => BytesProducer) {
    this.#make = make;
  }

  get(): BytesProducer {
    this.#current ??= this.#make();
    return this.#current;
  }

  /** Replaces the producer, or only `failed` if it is still the current one (another caller may have replaced it). */
  async replace(failed?: BytesProducer): Promise<void> {
    const old = this.#current;
    if (old === undefined || (failed !== undefined && failed !== old)) return;
    this.#current = undefined;
    await old.close().catch(() => {});
  }
}

export function createPublishing(opts: PublishingOptions): Publishing {
  // at_least_once: one idempotent producer shared by every partition.
  const shared = new ProducerSlot(() => newProducer(opts, undefined));
  const slots = new Set<ProducerSlot>([shared]);
  let closed: Promise<void> | undefined;
  // A connection of the shared producer, for the raw requests below; none when no broker answers.
  const anyConnection = async (): Promise<Connection | undefined> => {
    try {
      return (await shared.get().connectToBrokers(null)).values().next().value;
    } catch {
      return undefined;
    }
  };
  // The raw requests, not the client's metadata(): that retries a refused topic for ~0.5 s and then
  // reports only the first refused topic of the request.
  const topicRefusals = async (topics: readonly string[]): Promise<Map<string, string>> => {
    const connection = await anyConnection();
    return connection === undefined ? new Map() : askTopicRefusals(connection, topics, PRODUCER_SETTINGS.timeout);
  };
  const topicSizeLimit = async (topic: string): Promise<number | undefined> => {
    const connection = opts.compression === 'none' ? await anyConnection() : undefined;
    return connection === undefined ? undefined : uncompressedSizeLimit(connection, topic);
  };
  return {
    guarantee: opts.guarantee,
    forPartition(partition) {
      if (opts.guarantee === 'at_least_once') {
        return {
          init: async () => {},
          async publish(rows, beforeCommit) {
            if (rows.length === 0) return;
            const producer = shared.get();
            try {
              // One send: the client has no linger, so each send is one request per leader.
              await producer.send({ messages: toKafkaMessages(rows) });
            } catch (err) {
              // Every partition shares this producer: replace it once, not once per failed send.
              await shared.replace(producer);
              throw kafkaError(err);
            }
            await beforeCommit?.();
          },
          topicRefusals,
          topicSizeLimit,
          close: async () => {},
        };
      }
      const slot = new ProducerSlot(() => newProducer(opts, `${opts.transactionalIdPrefix}-p${partition}`));
      slots.add(slot);
      // A failed beginTransaction (FindCoordinator or InitProducerId) leaves the client believing a
      // transaction is active, and every later one fails with "There is already an active
      // transaction": the producer is replaced.
      const begin = async () => {
        try {
          return await slot.get().beginTransaction();
        } catch (err) {
          await slot.replace();
          throw kafkaError(err);
        }
      };
      const progressKeyBytes = Buffer.from(progressKey(opts.transactionalIdPrefix, partition, opts.outboxIdentity));
      const progress = (rows: readonly ClaimedRow[]): Message => ({
        topic: opts.progressTopic,
        partition,
        key: progressKeyBytes,
        value: Buffer.from(encodeProgress(rows)),
      });
      return {
        async init() {
          // Beginning a transaction runs InitProducerId; nothing is sent, so there is nothing to end.
          const tx = await begin();
          try {
            await tx.cancel();
          } catch (err) {
            throw kafkaError(err);
          }
        },
        async publish(rows, beforeCommit) {
          if (rows.length === 0) return;
          const tx = await begin();
          const abort = () => tx.abort().catch(() => tx.cancel().catch(() => {}));
          try {
            const messages = toKafkaMessages(rows);
            messages.push(progress(rows));
            await tx.send({ messages });
          } catch (err) {
            // A fenced producer cannot abort; the new owner already aborted this transaction.
            await abort();
            await slot.replace();
            throw kafkaError(err);
          }
          try {
            await beforeCommit?.();
          } catch (err) {
            // Not Kafka's failure: the producer is fine, only this transaction must not commit.
            await abort();
            throw err;
          }
          try {
            await tx.commit();
          } catch (err) {
            await abort();
            await slot.replace();
            throw kafkaError(err);
          }
        },
        topicRefusals,
        topicSizeLimit,
        async close() {
          slots.delete(slot);
          await slot.replace();
        },
      };
    },
    close() {
      closed ??= Promise.allSettled([...slots].map((s) => s.replace())).then(() => {});
      return closed;
    },
  };
}
