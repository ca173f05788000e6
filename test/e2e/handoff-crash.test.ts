import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice } from '../support/spawn-sluice.ts';

describe('kill -9 between the in-memory hand-off and the checkpoint', () => {
  let db: TestDatabase;
  let dir: string;
  let env: Record<string, string>;
  let nodeDir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-handoff-crash-'));
    nodeDir = join(dir, 'journal', 'handoff-node');
    env = {
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'handoff-node',
    };
  }, 60_000);

  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('rows the forwarder inserted from memory but never checkpointed are found, not inserted again, after the restart', async () => {
    // The checkpoint's temp file cannot be created: every forwarder commit inserts its rows and then
    // fails before the checkpoint, so the kill below always lands between the two.
    const blocker = join(nodeDir, 'checkpoint.json.tmp');
    mkdirSync(blocker, { recursive: true });
    const first = await spawnSluice(env, 'ingest');
    const acked = new Map<string, number>();
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; i < 60; i++) {
        const key = `w${w}-${i}`;
        const res = await fetch(`${first.url}/v1/events`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'handoff' },
          body: JSON.stringify({ dedupe_key: key, payload: { w, i } }),
        });
        expect(res.status).toBe(202);
        const body = (await res.json()) as { id: string };
        acked.set(key, Number(body.id.split(':')[1]));
      }
    };
    await Promise.all(Array.from({ length: 5 }, (_, w) => writer(w)));
    const rowsNow = async (): Promise<Map<string, string>> =>
      new Map((await db.sql<{ dedupe_key: string; id: string }[]>`SELECT dedupe_key, id::text FROM outbox WHERE tenant_id = 'handoff'`).map((r) => [r.dedupe_key, r.id]));
    await eventually(async () => {
      const rows = await rowsNow();
      return [...acked.keys()].every((k) => rows.has(k));
    }, 30_000, 'every acknowledged write in the outbox');
    const before = await rowsNow();
    expect(before.size).toBe(acked.size);
    first.proc.kill('SIGKILL');
    expect(await first.proc.exited).not.toBe(0);
    expect(existsSync(join(nodeDir, 'checkpoint.json'))).toBe(false);
    rmSync(blocker, { recursive: true });

    const second = await spawnSluice(env, 'ingest');
    try {
      const last = Math.max(...acked.values());
      await eventually(async () => {
        if (!existsSync(join(nodeDir, 'checkpoint.json'))) return false;
        return (JSON.parse(readFileSync(join(nodeDir, 'checkpoint.json'), 'utf8')) as { seq: number }).seq >= last;
      }, 30_000, 'the restarted forwarder passed every acknowledged write');
      // Nothing lost, nothing inserted twice: the same rows with the same ids.
      expect(await rowsNow()).toEqual(before);
      // The restart read them back from the files and found each one in the outbox.
      const metrics = await (await fetch(`${second.url}/metrics`)).text();
      const duplicates = Number(/sluice_forwarded_records_total\{result="duplicate"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      expect(duplicates).toBe(acked.size);
    } finally {
      second.proc.kill('SIGTERM');
      expect(await second.proc.exited).toBe(0);
    }
  }, 90_000);
});
