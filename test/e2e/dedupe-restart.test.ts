import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEY_SNAPSHOT_FILE } from '../../src/ingest/key-snapshot.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

interface Result {
  dedupe_key: string;
  id: string;
  duplicate: boolean;
}

describe('the dedupe index across restarts, clean and kill -9, with forwarding blocked', () => {
  let db: TestDatabase;
  let dir: string;
  let env: Record<string, string>;
  const snapshot = (): string => join(dir, 'journal', 'dd-node', KEY_SNAPSHOT_FILE);

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-dedupe-'));
    env = {
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'dd-node',
      SLUICE_MAX_UNFORWARDED: '100000',
      // No periodic snapshot during the test: only the one a clean stop writes.
      SLUICE_DEDUPE_SNAPSHOT_MS: '3600000',
    };
    // The outbox refuses every insert: everything written stays unforwarded, in the journal only.
    await db.sql`ALTER TABLE outbox RENAME TO outbox_held`;
  }, 60_000);

  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = async (node: SpawnedSluice, keys: string[], payload: (k: string) => unknown): Promise<Result[]> => {
    const res = await fetch(`${node.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'acme' },
      body: keys.map((k) => JSON.stringify({ dedupe_key: k, payload: payload(k) })).join('\n'),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { results: Result[] }).results;
  };
  const loaded = (node: SpawnedSluice): Record<string, number> | undefined => {
    const line = node.logLines().find((l) => l.includes('"dedupe index loaded"'));
    return line === undefined ? undefined : (JSON.parse(line) as Record<string, number>);
  };

  test('repeats of every acknowledged key stay duplicates with their original ids; the outbox gets each key once', async () => {
    const a = Array.from({ length: 2000 }, (_, i) => `a${i}`);
    const b = Array.from({ length: 1000 }, (_, i) => `b${i}`);
    const ids = new Map<string, string>();

    const first = await spawnSluice(env, 'ingest');
    for (const r of await post(first, a, (k) => ({ k }))) ids.set(r.dedupe_key, r.id);
    first.proc.kill('SIGTERM');
    expect(await first.proc.exited).toBe(0);
    expect(statSync(snapshot()).size).toBe(32 + 2000 * 16);

    // Clean restart: the index comes from the snapshot alone. Then writes, and kill -9 before any snapshot.
    const second = await spawnSluice(env, 'ingest');
    expect(loaded(second)).toMatchObject({ from_snapshot: 2000, from_journal: 0, keys: 2000 });
    for (const r of await post(second, b, (k) => ({ k }))) ids.set(r.dedupe_key, r.id);
    second.proc.kill('SIGKILL');
    await second.proc.exited;

    // After the crash: snapshot plus the journal after it.
    const third = await spawnSluice(env, 'ingest');
    expect(loaded(third)).toMatchObject({ from_snapshot: 2000, from_journal: 1000, keys: 3000 });
    const repeats = await post(third, [...a, ...b], (k) => ({ k, again: true }));
    expect(repeats.filter((r) => !r.duplicate).map((r) => r.dedupe_key)).toEqual([]);
    expect(repeats.filter((r) => r.id !== ids.get(r.dedupe_key)).map((r) => r.dedupe_key)).toEqual([]);
    const [fresh] = await post(third, ['c'], (k) => ({ k }));
    expect(fresh?.duplicate).toBe(false);
    third.proc.kill('SIGKILL');
    await third.proc.exited;

    // A damaged snapshot is reported and ignored: the whole unforwarded journal is read instead.
    truncateSync(snapshot(), 100);
    const fourth = await spawnSluice(env, 'ingest');
    expect(fourth.logLines().some((l) => l.includes('dedupe index snapshot not used') && l.includes('truncated'))).toBe(true);
    expect(loaded(fourth)).toMatchObject({ from_snapshot: 0, from_journal: 3001, keys: 3001 });
    const [again] = await post(fourth, ['a5', 'b999', 'c'], (k) => ({ k, again: true }));
    expect(again).toMatchObject({ dedupe_key: 'a5', duplicate: true, id: ids.get('a5') });

    await db.sql`ALTER TABLE outbox_held RENAME TO outbox`;
    await eventually(async () => (await db.sql`SELECT 1 FROM outbox`).length === 3001, 30_000, 'backlog forwarded');
    const rows = await db.sql<{ dedupe_key: string; payload: { k: string; again?: boolean } }[]>`SELECT dedupe_key, payload_text::jsonb AS payload FROM outbox`;
    expect(rows.filter((r) => r.payload.k !== r.dedupe_key || r.payload.again !== undefined)).toEqual([]);
    fourth.proc.kill('SIGTERM');
    expect(await fourth.proc.exited).toBe(0);
  }, 120_000);
});
