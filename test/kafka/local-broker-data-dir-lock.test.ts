import { afterAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLines, runCli } from '../support/cli.ts';
import { readTopic } from '../support/kafka.ts';
import { freePort } from '../support/ports.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { eventually, postEvent } from '../support/sluice.ts';
import { spawnSluice } from '../support/spawn-sluice.ts';

/**
 * After an outside test: a second `serve` on the data directory of a running one started its local
 * broker before it was refused, rewrote the first one's server.properties and deleted its broker.pid,
 * and its controller disturbed the first one's quorum; its error blamed the port.
 */
const scratch = mkdtempSync(join(tmpdir(), 'sluice-broker-lock-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Running, as far as a port is concerned: a zombie has no command line and holds no socket. */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '';
  } catch {
    return false;
  }
}

describe('a local broker locks its data directory', () => {
  test('a second serve on a running one\'s data directory is refused, naming it, and the first is untouched and still publishes; a stale lock is taken over', async () => {
    const dataDir = join(scratch, 'data3');
    const brokerDir = join(dataDir, 'kafka');
    const topic = `lock.${Bun.randomUUIDv7()}`;
    // A lock left by a process that is gone: the first start takes it over.
    const dead = Bun.spawnSync(['true']).pid;
    mkdirSync(brokerDir, { recursive: true });
    writeFileSync(join(brokerDir, 'broker.lock'), `${dead}\n`);

    const kafkaPort = await freePort();
    // The runner's own database and broker settings must not leak in: embedded database, own broker.
    const inherited = Object.keys(process.env).filter((k) => k.startsWith('SLUICE_') || k === 'DATABASE_URL' || k === 'KAFKA_BROKERS');
    const a = await spawnSluice({
      ...Object.fromEntries(inherited.map((k) => [k, ''])),
      SLUICE_PORT: String(await freePort()),
      SLUICE_KAFKA_LOCAL_PORT: String(kafkaPort),
      SLUICE_DATA_DIR: dataDir,
      SLUICE_JOURNAL_DIR: join(scratch, 'j3'),
      SLUICE_KAFKA_TOPIC: topic,
    });
    const db = await createTestDatabase({ migrate: false });
    try {
      await eventually(async () => a.logLines().some((l) => l.includes('"local kafka ready"')), 90_000, 'the first serve\'s broker');
      expect(readFileSync(join(brokerDir, 'broker.lock'), 'utf8')).toBe(`${a.proc.pid}\n`);
      const props = readFileSync(join(brokerDir, 'server.properties'), 'utf8');
      const pidFile = readFileSync(join(brokerDir, 'broker.pid'), 'utf8');
      const jvm = Number(pidFile.split(' ')[0]);
      expect(running(jvm)).toBe(true);

      const b = {
        SLUICE_PORT: String(await freePort()),
        SLUICE_KAFKA_LOCAL_PORT: String(await freePort()),
        SLUICE_DATA_DIR: dataDir,
        SLUICE_JOURNAL_DIR: join(scratch, 'j4'),
      };
      const refusal = `SLUICE_DATA_DIR: the local Kafka broker's data directory ${brokerDir} is in use by another sluice, process ${a.proc.pid} (`;
      const fix = '): stop that sluice, or give this one another SLUICE_DATA_DIR';
      // With the embedded database, whose own lock would otherwise be the first thing it hits; then with a server.
      for (const env of [b, { ...b, DATABASE_URL: db.url }]) {
        const r = await runCli(['serve'], env, { clean: true });
        expect(r.code).toBe(1);
        const failed = logLines(r.stderr).find((l) => l.level === 'error');
        const message = JSON.stringify(failed);
        expect(message).toContain(refusal);
        expect(message).toContain(fix);
        expect(r.stderr).not.toContain('sluice listening');
      }

      expect(readFileSync(join(brokerDir, 'server.properties'), 'utf8')).toBe(props);
      expect(readFileSync(join(brokerDir, 'broker.pid'), 'utf8')).toBe(pidFile);
      expect(readFileSync(join(brokerDir, 'broker.lock'), 'utf8')).toBe(`${a.proc.pid}\n`);
      expect(running(jvm)).toBe(true);
      expect(a.proc.exitCode).toBeNull();

      const res = await postEvent(a.url, { dedupe_key: 'after-b', payload: { n: 1 } }, { 'X-Tenant-Id': 'lock' });
      expect(res.status).toBe(202);
      const records = await readTopic([`127.0.0.1:${kafkaPort}`], topic, { expected: 1 });
      expect(records.map((r) => [r.key, r.value])).toEqual([['lock:after-b', '{"n":1}']]);
      expect(a.logLines().filter((l) => l.includes('"level":"error"') || l.includes('KRaft controller'))).toEqual([]);

      a.proc.kill('SIGTERM');
      expect(await a.proc.exited).toBe(0);
      expect(() => readFileSync(join(brokerDir, 'broker.lock'))).toThrow();
    } finally {
      a.proc.kill('SIGKILL');
      await db.drop();
    }
  }, 240_000);
});
