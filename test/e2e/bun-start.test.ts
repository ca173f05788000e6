import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTopic } from '../support/kafka.ts';
import { freePort } from '../support/ports.ts';
import { eventually, postEvent } from '../support/sluice.ts';
import { expectStoppedBecause, spawnSluice } from '../support/spawn-sluice.ts';

describe('bun start with no configuration: own broker, embedded database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bun-start-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('ingest is ready before the broker, publishes once it is up, logs its timings, stops quietly, and stops when its broker dies', async () => {
    const kafkaPort = await freePort();
    const topic = `start.${Bun.randomUUIDv7()}`;
    const env: Record<string, string> = {
      SLUICE_PORT: '0',
      SLUICE_KAFKA_LOCAL_PORT: String(kafkaPort),
      SLUICE_DATA_DIR: join(dir, 'data'),
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_KAFKA_TOPIC: topic,
    };
    // The runner's own database and broker settings must not leak in: this is `bun start` bare.
    const inherited = Object.keys(process.env).filter((k) => k.startsWith('SLUICE_') || k === 'DATABASE_URL' || k === 'KAFKA_BROKERS');
    const started = performance.now();
    const sluice = await spawnSluice({ ...Object.fromEntries(inherited.map((k) => [k, undefined])), ...env });
    try {
      const listening = JSON.parse(sluice.logLines().find((l) => l.includes('"sluice listening"')) ?? '{}') as Record<string, number | string>;
      expect(listening.database).toBe('embedded');
      for (const part of ['database_ms', 'migrate_ms', 'journal_ms', 'total_ms']) expect(typeof listening[part]).toBe('number');
      const ready = await fetch(`${sluice.url}/readyz`);
      const body = (await ready.json()) as { components: Record<string, { ok: boolean; required: boolean }> };
      expect(ready.status).toBe(200);
      expect(body.components.kafka?.required).toBe(false);
      const readyMs = Math.round(performance.now() - started);

      const res = await postEvent(sluice.url, { dedupe_key: 'first', payload: { hello: 'start' } }, { 'X-Tenant-Id': 'starter' });
      expect(res.status).toBe(202);
      await eventually(async () => sluice.logLines().some((l) => l.includes('"local kafka ready"')), 90_000, 'the local broker');
      const brokerLine = JSON.parse(sluice.logLines().find((l) => l.includes('"local kafka ready"')) ?? '{}') as { bootstrap: string; kafka_local_ms: number };
      expect(brokerLine.bootstrap).toBe(`127.0.0.1:${kafkaPort}`);
      const records = await readTopic([brokerLine.bootstrap], topic, { expected: 1 });
      expect(records.map((r) => [r.key, r.value])).toEqual([['starter:first', '{"hello":"start"}']]);
      console.log(
        `bun start (first start, cold data dir): ingest ready after ${readyMs} ms (sluice's own count ${listening.total_ms} ms: database ${listening.database_ms} ms); local broker ${brokerLine.kafka_local_ms} ms`,
      );
      expect((await fetch(`${sluice.url}/readyz`)).status).toBe(200);

      sluice.proc.kill('SIGTERM');
      expect(await sluice.proc.exited).toBe(0);
      const noisy = sluice.logLines().filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'));
      expect(noisy).toEqual([]);
    } finally {
      sluice.proc.kill('SIGKILL');
    }

    // Again on the warm data directory: what an operator sees on every later start.
    const again = performance.now();
    const warm = await spawnSluice({ ...Object.fromEntries(inherited.map((k) => [k, undefined])), ...env });
    try {
      expect((await fetch(`${warm.url}/readyz`)).status).toBe(200);
      const readyMs = Math.round(performance.now() - again);
      await eventually(async () => warm.logLines().some((l) => l.includes('"local kafka ready"')), 90_000, 'the local broker again');
      const brokerLine = JSON.parse(warm.logLines().find((l) => l.includes('"local kafka ready"')) ?? '{}') as { kafka_local_ms: number; since_start_ms: number };
      console.log(`bun start (warm): ingest ready after ${readyMs} ms; local broker ${brokerLine.kafka_local_ms} ms, publishing from ${brokerLine.since_start_ms} ms`);
      // Its broker dies: sluice stops (exit 1) rather than publish to whatever takes the port next.
      const children = Bun.spawnSync(['pgrep', '-f', '-P', String(warm.proc.pid), 'kafka.Kafka']).stdout.toString().trim().split('\n');
      expect(children.length).toBe(1);
      process.kill(Number(children[0]), 'SIGKILL');
      await expectStoppedBecause(warm, 'the local Kafka broker exited (code ');
    } finally {
      warm.proc.kill('SIGKILL');
    }
  }, 180_000);
});
