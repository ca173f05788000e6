import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMBEDDED_PURGE_DELAY } from '../../src/outbox/embedded.ts';
import { PURGE_DELAY_VARIABLE } from '../../src/roles/engine-memory.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { environOf } from '../support/processes.ts';
import { eventually, postEvent } from '../support/sluice.ts';
import { expectStoppedBecause, spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

/** The embedded database's process: the one child of sluice running embedded-server.ts. */
function databaseProcess(sluice: SpawnedSluice): number {
  const pids = Bun.spawnSync(['pgrep', '-f', '-P', String(sluice.proc.pid), 'embedded-server.ts']).stdout.toString().trim().split('\n').filter((l) => l.length > 0);
  expect(pids.length).toBe(1);
  return Number(pids[0]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !(Bun.spawnSync(['ps', '-o', 'stat=', '-p', String(pid)]).stdout.toString().trim().startsWith('Z'));
  } catch {
    return false;
  }
}

describe('the embedded database runs in a process of its own', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-process-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('it ends with sluice, even killed with SIGKILL; a restart on the same directory has every write; its own death stops sluice', async () => {
    const brokers = await testBrokers();
    const topic = `embedded.${Bun.randomUUIDv7()}`;
    const env = {
      // The runner's database must not leak in: this is the embedded default with a real broker.
      DATABASE_URL: undefined,
      [PURGE_DELAY_VARIABLE]: undefined,
      KAFKA_BROKERS: brokers.join(','),
      SLUICE_PORT: '0',
      SLUICE_DATA_DIR: join(dir, 'data'),
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_KAFKA_TOPIC: topic,
    };
    const first = await spawnSluice(env);
    let db = 0;
    try {
      db = databaseProcess(first);
      // sluice keeps the memory its allocator frees; the database's process returns it, as by default.
      expect([environOf(first.proc.pid, PURGE_DELAY_VARIABLE), environOf(db, PURGE_DELAY_VARIABLE)]).toEqual(['-1', EMBEDDED_PURGE_DELAY]);
      const listening = JSON.parse(first.logLines().find((l) => l.includes('"sluice listening"')) ?? '{}') as { database?: string };
      expect(listening.database).toBe('embedded');
      expect((await postEvent(first.url, { dedupe_key: 'before-kill', payload: { n: 1 } }, { 'X-Tenant-Id': 'emb' })).status).toBe(202);
      await eventually(async () => (await readTopic(brokers, topic, { expected: 1 })).length === 1, 30_000, 'the first record');
      first.proc.kill('SIGKILL');
      await first.proc.exited;
      // No process is left with the database files open.
      await eventually(async () => !alive(db), 5_000, "the database's process to end with sluice");
    } finally {
      first.proc.kill('SIGKILL');
    }

    const second = await spawnSluice(env);
    try {
      const again = await postEvent(second.url, { dedupe_key: 'before-kill', payload: { n: 1 } }, { 'X-Tenant-Id': 'emb' });
      expect(again.status).toBe(200);
      expect((await postEvent(second.url, { dedupe_key: 'after-restart', payload: { n: 2 } }, { 'X-Tenant-Id': 'emb' })).status).toBe(202);
      const records = await readTopic(brokers, topic, { expected: 2 });
      expect(records.map((r) => [r.key, r.value])).toEqual([
        ['emb:before-kill', '{"n":1}'],
        ['emb:after-restart', '{"n":2}'],
      ]);
      // The database's process dies: sluice stops (exit 1), naming it, rather than run without its outbox.
      process.kill(databaseProcess(second), 'SIGKILL');
      await expectStoppedBecause(second, "the embedded database's process (pid ");
    } finally {
      second.proc.kill('SIGKILL');
    }
  }, 120_000);
});
