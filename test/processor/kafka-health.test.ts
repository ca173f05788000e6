import { describe, expect, test } from 'bun:test';
import { Admin } from '@platformatic/kafka';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { probeKafka } from '../../src/probes.ts';
import { KafkaHealth } from '../../src/processor/kafka-health.ts';
import { failureReason } from '../../src/kafka/errors.ts';
import { testBrokers } from '../support/kafka.ts';
import { freePort as closedPort } from '../support/ports.ts';

describe('KafkaHealth', () => {
  test('logs once per change of state, with the brokers and the cause, and sets sluice_kafka_reachable', async () => {
    const good = await testBrokers();
    const bad = [`127.0.0.1:${await closedPort()}`];
    const lines: Record<string, unknown>[] = [];
    const metrics = createMetrics();
    // The real probe against a real broker, or against a port nobody listens on, as the test switches.
    let target = bad;
    const health = new KafkaHealth({
      brokers: ['cluster'],
      probe: () => probeKafka(target, 1_500),
      intervalMs: 60_000,
      log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }),
      metrics,
    });
    const schedule = ['bad', 'bad', 'bad', 'good', 'good', 'bad', 'good'];
    for (const step of schedule) {
      target = step === 'good' ? good : bad;
      const state = await health.check();
      expect(state.ok).toBe(step === 'good');
    }
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'kafka unreachable; records wait in the outbox'],
      ['info', 'kafka reachable again'],
      ['warn', 'kafka unreachable; records wait in the outbox'],
      ['info', 'kafka reachable again'],
    ]);
    expect(lines[0]).toMatchObject({ brokers: ['cluster'], cause: 'connection refused (nothing listens there)' });
    expect(typeof lines[1]?.down_ms).toBe('number');
    expect((await metrics.kafkaReachable.get()).values).toEqual([{ labels: { brokers: 'cluster' }, value: 1 }]);
  }, 120_000);

  test('the reason label of a real client failure is a word, not an error class', async () => {
    const admin = new Admin({ clientId: 'reason-test', bootstrapBrokers: [`127.0.0.1:${await closedPort()}`], retries: 0 });
    const err = await admin.metadata({ topics: [] }).then(() => undefined, (e: unknown) => e);
    await admin.close();
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('AggregateError');
    expect(failureReason(err)).toBe('network');
    expect(failureReason(Object.assign(new Error('x'), { apiId: 'NOT_ENOUGH_REPLICAS' }))).toBe('not_enough_replicas');
    expect(failureReason(new Error('something else'))).toBe('other');
  });
});
