import { Consumer, FetchIsolationLevels, MessagesStreamModes, stringDeserializers } from '@platformatic/kafka';
import { startLocalBroker, type LocalBroker } from '../../src/kafka/local-broker.ts';

let shared: Promise<LocalBroker> | undefined;

/**
 * Brokers for tests: KAFKA_BROKERS when set (CI starts one broker for the whole run), otherwise one
 * local broker started on first use and stopped after the last test.
 */
export async function testBrokers(): Promise<string[]> {
  const fromEnv = process.env.KAFKA_BROKERS;
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv.split(',');
  shared ??= startLocalBroker();
  return [(await shared).bootstrap];
}

export async function stopSharedBroker(): Promise<void> {
  if (shared === undefined) return;
  const broker = await shared;
  shared = undefined;
  await broker.stop();
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string;
  value: string;
  headers: Record<string, string>;
}

/**
 * Reads a topic from the beginning with a real read_committed consumer until `expected` records have
 * arrived, then keeps listening for `graceMs` more so that a duplicate would be seen too.
 */
export async function readTopic(
  brokers: string[],
  topic: string,
  opts: { expected: number; timeoutMs?: number; graceMs?: number },
): Promise<ConsumedRecord[]> {
  const consumer = new Consumer<string, string, string, string>({
    clientId: 'sluice-test-reader',
    groupId: `sluice-test-${Bun.randomUUIDv7()}`,
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    autocommit: false,
    maxWaitTime: 200,
  });
  const records: ConsumedRecord[] = [];
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const stream = await consumeWhenCreated(consumer, topic, deadline);
  let stopAt = deadline;
  const timer = setInterval(() => {
    if (Date.now() >= stopAt) void stream.close();
  }, 50);
  try {
    for await (const m of stream) {
      records.push({
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key,
        value: m.value,
        headers: Object.fromEntries(m.headers),
      });
      if (records.length >= opts.expected) stopAt = Math.min(stopAt, Date.now() + (opts.graceMs ?? 1_000));
    }
  } finally {
    clearInterval(timer);
    await stream.close().catch(() => {});
    await consumer.close(true);
  }
  return records;
}

/** The topic is created by the first publish, which may not have happened yet: wait for it. */
async function consumeWhenCreated(consumer: Consumer<string, string, string, string>, topic: string, deadline: number) {
  for (;;) {
    try {
      return await consumer.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST });
    } catch (err) {
      if (!/Unknown topic/.test((err as Error).message) || Date.now() > deadline) throw err;
      await Bun.sleep(100);
    }
  }
}
