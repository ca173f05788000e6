import { describe, expect, test } from 'bun:test';
import { warmBrokerTransactions } from '../../bench/broker-warmup.ts';
import { allStats, commandLine } from '../../bench/proc.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';

describe('bench broker warm-up', () => {
  test('commits transactions like sluice\'s until the broker\'s compilers settle or the time is up; every record is in Kafka', async () => {
    const brokers = await testBrokers();
    // A broker JVM of this machine, the newest (the run's own when it started one): only its compiler figure depends on which.
    const jvm = allStats()
      .filter((s) => commandLine(s.pid).includes('kafka.Kafka'))
      .sort((a, b) => b.startTicks - a.startTicks)[0];
    expect(jvm).toBeDefined();
    const lines: string[] = [];
    const base = { brokers, brokerPid: jvm?.pid ?? 0, minS: 1, maxS: 4, say: (l: string) => lines.push(l) };

    // Settled at once (any compiler figure is below 100 cores): one window past minS.
    const topic = `warmup-${Bun.randomUUIDv7()}`;
    const settled = await warmBrokerTransactions({ ...base, topic, settledCores: 100 });
    expect(settled.seconds).toBeGreaterThanOrEqual(3);
    expect(settled.seconds).toBeLessThan(4);
    expect(settled.transactions).toBeGreaterThan(0);
    expect(Number.isFinite(settled.compilerCores)).toBe(true);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ {2}warming the broker: \d+ transactions in 3 s, its compilers at \d+\.\d\d cores$/);
    // Each transaction: 50 records and one on the progress topic, all committed.
    const records = await readTopic(brokers, topic, { expected: settled.transactions * 50, graceMs: 200 });
    expect(records.length).toBe(settled.transactions * 50);
    expect(new Set(records.map((r) => r.key)).size).toBe(records.length);
    const progress = await readTopic(brokers, `${topic}.progress`, { expected: settled.transactions, graceMs: 200 });
    expect(progress.length).toBe(settled.transactions);

    // Never settled: stopped by maxS at the first window past it.
    const unsettled = await warmBrokerTransactions({ ...base, topic: `warmup-${Bun.randomUUIDv7()}`, settledCores: -1 });
    expect(unsettled.seconds).toBeGreaterThanOrEqual(6);
    expect(unsettled.seconds).toBeLessThan(7.5);
  }, 60_000);
});
