import { CommittedReader } from '../../src/kafka/committed-records.ts';
import { kafkaTools } from '../../src/config.ts';
import { startLocalBroker, type LocalBroker, type LocalBrokerOptions } from '../../src/kafka/local-broker.ts';

let shared: Promise<LocalBroker> | undefined;

/** A local broker's options for tests: the jar cache and java from this process's environment. */
export function brokerOptions(opts: Omit<LocalBrokerOptions, 'tools'> = {}): LocalBrokerOptions {
  return { ...opts, tools: kafkaTools(process.env) };
}

/**
 * Brokers for tests: KAFKA_BROKERS when set (CI starts one broker for the whole run), otherwise one
 * local broker started on first use and stopped after the last test.
 */
export async function testBrokers(): Promise<string[]> {
  const fromEnv = process.env.KAFKA_BROKERS;
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv.split(',');
  shared ??= startLocalBroker(brokerOptions());
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
 * Reads every committed record of a topic (read_committed semantics, each transaction decided by its
 * marker; see src/kafka/committed-records.ts for why not the client's stream) until `expected`
 * records are there, then once more after `graceMs`, so that a duplicate arriving late is seen too.
 */
export async function readTopic(
  brokers: string[],
  topic: string,
  opts: { expected: number; timeoutMs?: number; graceMs?: number },
): Promise<ConsumedRecord[]> {
  const reader = new CommittedReader(brokers, 'sluice-test-reader');
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  try {
    for (;;) {
      const records = await readAll(reader, topic);
      if (records.length >= opts.expected) {
        await Bun.sleep(opts.graceMs ?? 1_000);
        return await readAll(reader, topic);
      }
      if (Date.now() > deadline) return records;
      await Bun.sleep(100);
    }
  } finally {
    await reader.close();
  }
}

async function readAll(reader: CommittedReader, topic: string): Promise<ConsumedRecord[]> {
  // The topic is created by the first publish, which may not have happened yet.
  const count = await reader.partitionCount(topic).catch(() => 0);
  const partitions = Array.from({ length: count }, (_, p) => p);
  if (partitions.length === 0) return [];
  const ends = await reader.endOffsets(topic, partitions);
  const all: ConsumedRecord[] = [];
  for (const p of partitions) {
    for (const r of await reader.read(topic, p, 0n, ends.get(p) ?? 0n)) {
      all.push({ topic, partition: p, offset: r.offset, key: r.key ?? '', value: r.value ?? '', headers: r.headers });
    }
  }
  return all;
}
