import { Admin, Consumer, FetchIsolationLevels, MessagesStreamModes, stringDeserializers } from '@platformatic/kafka';

export interface Arrival {
  key: string;
  value: string;
  headers: Map<string, string>;
  /** Date.now() when the consumer handed the record over. */
  arrivedAt: number;
}

export interface TopicReader {
  /** Distinct record keys seen so far (a duplicate would not count twice). */
  readonly distinct: number;
  readonly duplicates: number;
  /** Resolves once `count` distinct keys arrived, or with false at the deadline. */
  waitFor(count: number, deadline: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function createTopic(brokers: string[], topic: string): Promise<void> {
  const admin = new Admin({ clientId: 'sluice-bench-admin', bootstrapBrokers: brokers });
  try {
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
  } finally {
    await admin.close();
  }
}

/**
 * A read_committed consumer of one topic from its start, handing each record to `onRecord` as it
 * arrives: what a downstream reader of sluice would see. Its stream lets through records of a
 * producer's second and later aborts within one fetch (see src/kafka/committed-records.ts); a
 * benchmark run aborts nothing, and counting distinct keys keeps a stray one from counting twice.
 */
export async function readCommitted(brokers: string[], topic: string, onRecord: (a: Arrival) => void): Promise<TopicReader> {
  const consumer = new Consumer<string, string, string, string>({
    clientId: 'sluice-bench-reader',
    groupId: `sluice-bench-${Bun.randomUUIDv7()}`,
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    autocommit: false,
    maxWaitTime: 50,
  });
  const stream = await consumer.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST });
  const seen = new Set<string>();
  let duplicates = 0;
  let notify: (() => void) | undefined;
  const loop = (async () => {
    for await (const m of stream) {
      const arrivedAt = Date.now();
      if (seen.has(m.key)) duplicates++;
      else seen.add(m.key);
      onRecord({ key: m.key, value: m.value, headers: m.headers, arrivedAt });
      notify?.();
    }
  })();
  return {
    get distinct() {
      return seen.size;
    },
    get duplicates() {
      return duplicates;
    },
    async waitFor(count, deadline) {
      while (seen.size < count && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          notify = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return seen.size >= count;
    },
    async close() {
      await stream.close().catch(() => {});
      await loop.catch(() => {});
      await consumer.close(true);
    },
  };
}
