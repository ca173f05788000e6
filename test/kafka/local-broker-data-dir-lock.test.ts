import { afterAll, describe, expect, test } from 'bun:test';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLines, runCli } from '../support/cli.ts';
import { BrokerDataDirInUse, brokerDataDirHolder, startLocalBroker } from '../../src/kafka/local-broker.ts';
import { brokerOptions, readTopic } from '../support/kafka.ts';
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

/** A directory whose broker.lock names `pid`. */
function lockedBy(name: string, pid: number): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'broker.lock'), `${pid}\n`);
  return dir;
}

/** A zombie: `sh` execs into a `sleep` that never reaps the short child the shell started before. */
async function zombie(): Promise<{ pid: number; parent: Bun.Subprocess }> {
  const parent = Bun.spawn(['sh', '-c', 'sleep 0.05 & exec sleep 30'], { stdout: 'ignore', stderr: 'ignore' });
  let pid: number | undefined;
  await eventually(async () => {
    const child = Bun.spawnSync(['pgrep', '-P', String(parent.pid)]).stdout.toString().trim();
    const stat = child === '' ? '' : readFileSync(`/proc/${child}/stat`, 'utf8');
    pid = Number(child);
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  }, 5_000, 'a zombie');
  return { pid: pid ?? 0, parent };
}

describe('a local broker locks its data directory', () => {
  test('held only by a live process: a dead or zombie holder is stale; a live one is refused before anything in the directory is touched', async () => {
    const dead = Bun.spawnSync(['true']).pid;
    expect(brokerDataDirHolder(lockedBy('dead', dead))).toBeUndefined();
    const z = await zombie();
    const live = Bun.spawn(['sleep', '30'], { stdout: 'ignore', stderr: 'ignore' });
    try {
      expect(brokerDataDirHolder(lockedBy('zombie', z.pid))).toBeUndefined();
      // Its own pid, not a lock this process took: a pid reused after the holder died.
      expect(brokerDataDirHolder(lockedBy('own', process.pid))).toBeUndefined();
      expect(brokerDataDirHolder(join(scratch, 'none'))).toBeUndefined();

      const dir = lockedBy('live', live.pid);
      expect(brokerDataDirHolder(dir)).toBe(live.pid);
      writeFileSync(join(dir, 'broker.pid'), `${live.pid} ${live.pid}\n`);
      const refused = await startLocalBroker(brokerOptions({ dataDir: dir })).then(() => undefined, (err: unknown) => err);
      expect(refused).toBeInstanceOf(BrokerDataDirInUse);
      expect((refused as Error).message).toBe(`the Kafka data directory ${dir} is in use by process ${live.pid} (sleep 30): stop that process, or give this broker another data directory`);
      expect(readFileSync(join(dir, 'broker.lock'), 'utf8')).toBe(`${live.pid}\n`);
      expect(readFileSync(join(dir, 'broker.pid'), 'utf8')).toBe(`${live.pid} ${live.pid}\n`);
      expect(existsSync(join(dir, 'server.properties'))).toBe(false);
      expect(live.exitCode).toBeNull();
    } finally {
      live.kill('SIGKILL');
      z.parent.kill('SIGKILL');
    }
  });

  test('a broker that exits at once is named with its first error, or as having logged none; serve says where its log is', async () => {
    // A stand-in for java: the broker's JVM exiting at start, with or without an error line.
    const javaHome = join(scratch, 'java');
    mkdirSync(join(javaHome, 'bin'), { recursive: true });
    writeFileSync(join(javaHome, 'bin', 'java'), '#!/bin/sh\ncase "$*" in *kafka.Kafka*) [ -n "$FAIL_LINE" ] && echo "$FAIL_LINE" >&2 ;; esac\nexit 1\n');
    chmodSync(join(javaHome, 'bin', 'java'), 0o755);
    const formatted = (name: string): string => {
      const dir = join(scratch, name);
      mkdirSync(join(dir, 'logs'), { recursive: true });
      writeFileSync(join(dir, 'logs', 'meta.properties'), 'cluster.id=x\nnode.id=1\nversion=1\n');
      return dir;
    };
    const silent = await startLocalBroker({ ...brokerOptions({ dataDir: formatted('silent') }), tools: { ...brokerOptions().tools, java: join(javaHome, 'bin', 'java') } }).then(() => undefined, (err: unknown) => err);
    expect(String((silent as Error).message).split('\n')[0]).toBe('kafka broker exited early (1) with no error logged');
    expect(existsSync(join(scratch, 'silent', 'broker.lock'))).toBe(false);

    const dataDir = join(scratch, 'serve-exits');
    formatted(join('serve-exits', 'kafka'));
    const port = await freePort();
    const r = await runCli(['serve'], {
      JAVA_HOME: javaHome,
      FAIL_LINE: 'ERROR [KafkaRaftServer nodeId=1] bad config',
      SLUICE_PORT: '0',
      SLUICE_KAFKA_LOCAL_PORT: String(port),
      SLUICE_DATA_DIR: dataDir,
      SLUICE_JOURNAL_DIR: join(scratch, 'serve-exits-journal'),
    }, { clean: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `SLUICE_KAFKA_LOCAL_PORT ${port}: the local Kafka broker did not start: kafka broker exited early (1): ERROR [KafkaRaftServer nodeId=1] bad config: see ${join(dataDir, 'kafka', 'broker.log')}, or set KAFKA_BROKERS to use a broker you run`,
    );
  }, 60_000);

  test.each(['embedded', 'server'])('a second serve on a running one\'s data directory is refused, naming it, and the first is untouched and still publishes; a stale lock is taken over (first one\'s database: %s)', async (database) => {
    const dataDir = join(scratch, `data-${database}`);
    const brokerDir = join(dataDir, 'kafka');
    const topic = `lock.${Bun.randomUUIDv7()}`;
    // A lock left by a process that is gone: the first start takes it over.
    const dead = Bun.spawnSync(['true']).pid;
    mkdirSync(brokerDir, { recursive: true });
    writeFileSync(join(brokerDir, 'broker.lock'), `${dead}\n`);

    const kafkaPort = await freePort();
    // The runner's own database and broker settings must not leak in: own broker, the database chosen here.
    const inherited = Object.keys(process.env).filter((k) => k.startsWith('SLUICE_') || k === 'DATABASE_URL' || k === 'KAFKA_BROKERS');
    const db = await createTestDatabase({ migrate: false });
    const a = await spawnSluice({
      ...Object.fromEntries(inherited.map((k) => [k, undefined])),
      ...(database === 'server' ? { DATABASE_URL: db.url } : {}),
      SLUICE_PORT: String(await freePort()),
      SLUICE_KAFKA_LOCAL_PORT: String(kafkaPort),
      SLUICE_DATA_DIR: dataDir,
      SLUICE_JOURNAL_DIR: join(scratch, `j3-${database}`),
      SLUICE_KAFKA_TOPIC: topic,
    });
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
        SLUICE_JOURNAL_DIR: join(scratch, `j4-${database}`),
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
      // check names the running sluice too, not the port its broker holds.
      const checked = await runCli(['check', '--timeout-ms', '3000'], { ...b, DATABASE_URL: db.url }, { clean: true });
      const kafkaLine = checked.stdout.split('\n').find((l) => l.startsWith('kafka '));
      expect(kafkaLine).toContain(`FAIL  ${refusal}`);
      expect(kafkaLine).toContain(fix);

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
