// The broker's transaction code compiled before any scenario is measured. The bench starts a fresh
// JVM; its Kafka ceiling (ProducerPerformance) runs no transactions, so the first `serve` scenario
// paid for HotSpot compiling the coordinator's paths (AddPartitionsToTxn, EndTxn, the markers,
// read_committed fetches): in json-sync the broker's C2 compiler thread ran at ~0.64 of a core,
// beside sluice and Postgres on 2 cores. A broker in production has long since compiled them.
import { Producer } from '@platformatic/kafka';
import { engineThread } from './cpu-meter.ts';
import { clockTicksPerSecond, threadStats } from './proc.ts';
import { createTopic, readCommitted } from './kafka-reader.ts';

export interface WarmupOptions {
  brokers: string[];
  /** The warm-up's own topics (records and progress); created by the producers. */
  topic: string;
  /** The broker's JVM, whose compiler threads tell when it is warm. */
  brokerPid: number;
  /** At least this long, at most `maxS`; done once its compilers use less than `settledCores` over a window. */
  minS: number;
  maxS: number;
  settledCores: number;
  say: (line: string) => void;
}

export interface WarmupResult {
  seconds: number;
  transactions: number;
  /** Cores the broker's compiler threads used in the last window. */
  compilerCores: number;
}

const PRODUCERS = 4;
const RECORDS_PER_TRANSACTION = 50;
const WINDOW_MS = 3_000;

/** CPU ticks of the JVM's compiler threads so far. */
function compilerTicks(pid: number): number {
  return threadStats(pid).reduce((sum, t) => sum + (engineThread(t.name) === 'jit' ? t.cpuTicks : 0), 0);
}

/** Transactions like sluice's (records plus a record on a second topic, read_committed reader) until the broker has compiled them. */
export async function warmBrokerTransactions(o: WarmupOptions): Promise<WarmupResult> {
  const started = performance.now();
  const value = Buffer.from(JSON.stringify({ kind: 'warmup', amount: 4200, currency: 'EUR', items: [{ sku: 'A-100', qty: 2 }] }));
  let transactions = 0;
  let stopping = false;
  let read = 0;
  await createTopic(o.brokers, o.topic);
  const reader = await readCommitted(o.brokers, o.topic, () => read++);
  const loops = Array.from({ length: PRODUCERS }, async (_, p) => {
    const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: 'sluice-bench-warmup',
      bootstrapBrokers: o.brokers,
      idempotent: true,
      acks: -1,
      retries: 20,
      retryDelay: 10,
      autocreateTopics: true,
      transactionalId: `sluice-bench-warmup-${p}-${Bun.randomUUIDv7()}`,
    });
    try {
      for (let n = 0; !stopping; n++) {
        const messages = Array.from({ length: RECORDS_PER_TRANSACTION }, (_, i) => ({ topic: o.topic, key: Buffer.from(`w${p}:${n}:${i}`), value }));
        messages.push({ topic: `${o.topic}.progress`, key: Buffer.from(`w${p}`), value: Buffer.from(String(n)) });
        const tx = await producer.beginTransaction();
        await tx.send({ messages });
        await tx.commit();
        transactions++;
      }
    } finally {
      await producer.close();
    }
  });
  const ticksPerS = clockTicksPerSecond();
  let compilerCores = Number.NaN;
  try {
    let before = compilerTicks(o.brokerPid);
    for (;;) {
      await Promise.race([Bun.sleep(WINDOW_MS), ...loops]);
      const now = compilerTicks(o.brokerPid);
      compilerCores = (now - before) / ticksPerS / (WINDOW_MS / 1000);
      before = now;
      const elapsedS = (performance.now() - started) / 1000;
      o.say(`  warming the broker: ${transactions} transactions in ${elapsedS.toFixed(0)} s, its compilers at ${compilerCores.toFixed(2)} cores`);
      if (elapsedS >= o.maxS || (elapsedS >= o.minS && compilerCores < o.settledCores)) break;
    }
  } finally {
    stopping = true;
    await Promise.all(loops);
    await reader.close();
  }
  if (read === 0) throw new Error('the broker warm-up read none of its committed records back');
  return { seconds: (performance.now() - started) / 1000, transactions, compilerCores };
}
