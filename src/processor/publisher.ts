import { compatibilityPartitioner, Producer, stringSerializers } from '@platformatic/kafka';
import { recordKey } from '../envelope.ts';
import type { OutboxRow } from '../outbox/repository.ts';

export type Compression = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

export interface PublisherOptions {
  brokers: string[];
  clientId: string;
  compression: Compression;
}

export interface Publisher {
  /** Sends the rows as one batch; resolves once Kafka acknowledged all of them (acks=all). */
  publish(rows: OutboxRow[]): Promise<void>;
  /** True when the cluster answers a metadata request within `timeoutMs`. */
  reachable(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The Kafka record for an outbox row: key tenant:dedupe_key, payload as JSON, sluice's headers. */
export function toKafkaMessage(row: OutboxRow) {
  const headers: Record<string, string> = {
    ...row.headers,
    tenant_id: row.tenant_id,
    dedupe_key: row.dedupe_key,
    outbox_id: row.id,
    ingested_at: row.ingested_at.toISOString(),
  };
  if (row.request_id !== null) headers.request_id = row.request_id;
  if (row.traceparent !== null) headers.traceparent = row.traceparent;
  if (row.replays > 0) headers.replay = 'true';
  return { topic: row.topic, key: recordKey(row), value: JSON.stringify(row.payload), headers };
}

export function createPublisher(opts: PublisherOptions): Publisher {
  const producer = new Producer<string, string, string, string>({
    clientId: opts.clientId,
    bootstrapBrokers: opts.brokers,
    idempotent: true,
    acks: -1,
    compression: opts.compression,
    // The Java client's partitioner: the default one disagrees for partition counts not a power of two.
    partitioner: compatibilityPartitioner,
    serializers: stringSerializers,
    autocreateTopics: true,
    // With idempotent: true, retries <= 1 would mean "retry forever".
    retries: 3,
    retryDelay: 250,
    timeout: 10_000,
  });
  let closed: Promise<void> | undefined;
  return {
    async publish(rows) {
      if (rows.length === 0) return;
      // One send: the client has no linger, so each send is one request per leader.
      await producer.send({ messages: rows.map(toKafkaMessage) });
    },
    async reachable(timeoutMs) {
      const probe = producer.metadata({ topics: [], forceUpdate: true }).then(
        () => true,
        () => false,
      );
      const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
      return Promise.race([probe, timeout]);
    },
    close() {
      return (closed ??= producer.close());
    },
  };
}
