import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { postEvent } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

describe('ingest and process as separate processes', () => {
  let db: TestDatabase;
  let dir: string;
  let brokers: string[];
  const children: SpawnedSluice[] = [];
  const topic = `split.${Bun.randomUUIDv7()}`;

  beforeAll(async () => {
    db = await createTestDatabase();
    brokers = await testBrokers();
    dir = mkdtempSync(join(tmpdir(), 'sluice-split-'));
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.proc.kill('SIGKILL');
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a write taken by `ingest` is published by `process`; each exits 0 on SIGTERM', async () => {
    const env = {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_PORT: '0',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_KAFKA_TOPIC: topic,
      SLUICE_TRANSACTIONAL_ID_PREFIX: `split-${Bun.randomUUIDv7()}`,
      SLUICE_POLL_MS: '20',
    };
    const ingest = await spawnSluice(env, 'ingest');
    children.push(ingest);
    const ready = await fetch(`${ingest.url}/readyz`);
    expect(await ready.json()).toEqual({
      status: 'ready',
      components: {
        journal: { ok: true, required: true },
        journal_integrity: { ok: true, required: true },
        outbox: { ok: true, required: true },
        forwarder: { ok: true, required: true },
        kafka: { ok: true, required: false, detail: 'not used by an ingest node: `sluice process` instances publish its writes' },
      },
    });
    expect((await postEvent(ingest.url, { dedupe_key: 'one', payload: { n: 1 } }, { 'X-Tenant-Id': 'split' })).status).toBe(202);

    const processor = await spawnSluice(env, 'process');
    children.push(processor);
    const [record, ...rest] = await readTopic(brokers, topic, { expected: 1 });
    expect(rest).toEqual([]);
    expect([record?.key, record?.value]).toEqual(['split:one', '{"n":1}']);

    // The processor's own health endpoints: ready when the outbox and Kafka answer; errors in sluice's shape.
    const processorReady = await fetch(`${processor.url}/readyz`);
    expect(processorReady.status).toBe(200);
    expect(await processorReady.json()).toEqual({ status: 'ready', components: { outbox: { ok: true, required: true }, kafka: { ok: true, required: true } } });
    expect(await (await fetch(`${processor.url}/healthz`)).json()).toEqual({ status: 'ok', partitions_owned: 16 });
    const missing = await fetch(`${processor.url}/v1/events`, { method: 'POST' });
    expect([missing.status, ((await missing.json()) as { error: { code: string } }).error.code]).toEqual([404, 'not_found']);
    const metrics = await (await fetch(`${processor.url}/metrics`)).text();
    expect(metrics).toContain('sluice_published_total{tenant="split"} 1');
    expect(metrics).toContain(`sluice_kafka_reachable{brokers="${brokers.join(',')}"} 1`);

    for (const c of [ingest, processor]) c.proc.kill('SIGTERM');
    expect(await Promise.all([ingest.proc.exited, processor.proc.exited])).toEqual([0, 0]);
    // A clean stop says so and nothing more alarming.
    for (const c of [ingest, processor]) {
      expect(c.logLines().filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'))).toEqual([]);
    }
  }, 90_000);
});
