import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBroker, type LocalBroker } from '../../src/kafka/local-broker.ts';
import { createLogger } from '../../src/log.ts';
import { brokerOptions, readTopic } from '../support/kafka.ts';
import { restartablePort } from '../support/ports.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually, postEvent, startSluice, type TestSluice } from '../support/sluice.ts';

describe('Kafka down while events arrive', () => {
  let db: TestDatabase;
  let dataDir: string;
  let broker: LocalBroker;
  let sluice: TestSluice;
  const logs: Record<string, unknown>[] = [];

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    // A broker of its own, on a data directory that survives its restart.
    dataDir = mkdtempSync(join(tmpdir(), 'sluice-outage-kafka-'));
    broker = await startLocalBroker(brokerOptions({ dataDir, port: await restartablePort() }));
    sluice = await startSluice({ DATABASE_URL: db.url, KAFKA_BROKERS: broker.bootstrap }, { log: createLogger({ level: 'debug', write: (l) => logs.push(JSON.parse(l) as Record<string, unknown>) }) });
  }, 180_000);

  afterAll(async () => {
    await sluice?.stop();
    await broker?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('ingest keeps answering 202, rows stay pending, and all are published exactly once after the broker is back', async () => {
    const warm = await postEvent(sluice.url, { dedupe_key: 'before', payload: { n: 0 } }, { 'X-Tenant-Id': 'acme' });
    expect(warm.status).toBe(202);
    await eventually(async () => {
      const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'`;
      return r?.n === 1;
    }, 20_000, 'first record sent');

    await broker.stop();
    const statuses: number[] = [];
    for (let i = 1; i <= 20; i++) {
      const res = await postEvent(sluice.url, { dedupe_key: `during-${i}`, payload: { n: i } }, { 'X-Tenant-Id': 'acme' });
      statuses.push(res.status);
    }
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 202));
    const pending = async (): Promise<number | undefined> =>
      (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'pending'`)[0]?.n;
    // The outage shows in the metric the broker-unreachable alert watches, by the next probe (every 5 s).
    const down = `sluice_kafka_reachable{brokers="${broker.bootstrap}"} 0`;
    await eventually(async () => (await (await fetch(`${sluice.url}/metrics`)).text()).includes(down), 15_000, 'sluice_kafka_reachable 0');
    // Waited for the processor to see the outage rather than for a while: nothing was taken meanwhile.
    expect(await pending()).toBe(20);
    // The node still takes writes and makes them durable: ready for ingest; Kafka shown as down.
    const ready = await fetch(`${sluice.url}/readyz`);
    expect(ready.status).toBe(200);
    const kafka = ((await ready.json()) as { components: { kafka: { ok: boolean; required: boolean; detail: string } } }).components.kafka;
    expect(kafka).toMatchObject({ ok: false, required: false });
    expect(kafka.detail).toContain(`KAFKA_BROKERS 127.0.0.1:${broker.port}: connection refused`);
    // An outage longer than two probes: the processor gives its partitions up (one info line) and
    // its tasks stop without a word, however long the broker then takes to come back.
    await eventually(async () => logs.some((l) => l.msg === 'cannot process (Kafka unreachable); leaving the partitions to other instances'), 30_000, 'partitions given up');

    expect(await pending()).toBe(20);
    broker = await startLocalBroker(brokerOptions({ dataDir, port: broker.port }));
    await eventually(async () => (await pending()) === 0, 60_000, 'backlog published');

    // The outage is one warning with the broker and the cause, and one line when it is over; the
    // partitions' own failures stay at debug level.
    await eventually(async () => logs.some((l) => l.msg === 'kafka reachable again'), 20_000, 'recovery logged');
    const outage = logs.filter((l) => l.level === 'warn' || l.level === 'error');
    expect(outage.map((l) => [l.msg, l.brokers, l.cause])).toEqual([['kafka unreachable; records wait in the outbox', [broker.bootstrap], 'connection refused (nothing listens there)']]);
    expect(logs.filter((l) => l.msg === 'kafka reachable again').length).toBe(1);

    const records = await readTopic([broker.bootstrap], sluice.topic, { expected: 21, graceMs: 2_000 });
    const keys = records.map((r) => r.key);
    expect(keys.length).toBe(21);
    expect(new Set(keys).size).toBe(21);
    expect(keys).toEqual(['acme:before', ...Array.from({ length: 20 }, (_, i) => `acme:during-${i + 1}`)]);
  }, 180_000);
});
