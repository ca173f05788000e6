import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fillJournal } from '../../bench/growth/fill-journal.ts';
import { KEY_SNAPSHOT_FILE } from '../../src/ingest/key-snapshot.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

interface Result {
  dedupe_key: string;
  id: string;
  duplicate: boolean;
}

// Every node started here, killed after each describe: a failed assertion must not leave one running.
const started: SpawnedSluice[] = [];
const start = async (env: Record<string, string>): Promise<SpawnedSluice> => {
  const node = await spawnSluice(env, 'ingest');
  started.push(node);
  return node;
};
// Without a usable snapshot the index is read in the background, so its log line may come after the start.
const loaded = async (node: SpawnedSluice): Promise<Record<string, number> | undefined> => {
  const find = (): string | undefined => node.logLines().find((l) => l.includes('"dedupe index loaded"'));
  await eventually(async () => find() !== undefined, 30_000, 'the dedupe index loaded').catch(() => {});
  const line = find();
  return line === undefined ? undefined : (JSON.parse(line) as Record<string, number>);
};
const killAll = async (): Promise<void> => {
  for (const node of started.splice(0)) {
    node.proc.kill('SIGKILL');
    await node.proc.exited;
  }
};

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
    await killAll();
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

  test('repeats of every acknowledged key stay duplicates with their original ids; the outbox gets each key once', async () => {
    const a = Array.from({ length: 2000 }, (_, i) => `a${i}`);
    const b = Array.from({ length: 1000 }, (_, i) => `b${i}`);
    const ids = new Map<string, string>();

    const first = await start(env);
    for (const r of await post(first, a, (k) => ({ k }))) ids.set(r.dedupe_key, r.id);
    first.proc.kill('SIGTERM');
    expect(await first.proc.exited).toBe(0);
    expect(statSync(snapshot()).size).toBe(32 + 2000 * 16);

    // Clean restart: the index comes from the snapshot alone. Then writes, and kill -9 before any snapshot.
    const second = await start(env);
    expect(await loaded(second)).toMatchObject({ from_snapshot: 2000, from_journal: 0, keys: 2000 });
    for (const r of await post(second, b, (k) => ({ k }))) ids.set(r.dedupe_key, r.id);
    second.proc.kill('SIGKILL');
    await second.proc.exited;

    // After the crash: snapshot plus the journal after it.
    const third = await start(env);
    expect(await loaded(third)).toMatchObject({ from_snapshot: 2000, from_journal: 1000, keys: 3000 });
    const repeats = await post(third, [...a, ...b], (k) => ({ k, again: true }));
    expect(repeats.filter((r) => !r.duplicate).map((r) => r.dedupe_key)).toEqual([]);
    expect(repeats.filter((r) => r.id !== ids.get(r.dedupe_key)).map((r) => r.dedupe_key)).toEqual([]);
    const [fresh] = await post(third, ['c'], (k) => ({ k }));
    expect(fresh?.duplicate).toBe(false);
    third.proc.kill('SIGKILL');
    await third.proc.exited;

    // A damaged snapshot is reported and ignored: the whole unforwarded journal is read instead.
    truncateSync(snapshot(), 100);
    const fourth = await start(env);
    expect(fourth.logLines().some((l) => l.includes('dedupe index snapshot not used') && l.includes('truncated'))).toBe(true);
    expect(await loaded(fourth)).toMatchObject({ from_snapshot: 0, from_journal: 3001, keys: 3001 });
    const [again] = await post(fourth, ['a5', 'b999', 'c'], (k) => ({ k, again: true }));
    expect(again).toMatchObject({ dedupe_key: 'a5', duplicate: true, id: ids.get('a5') });

    fourth.proc.kill('SIGTERM');
    expect(await fourth.proc.exited).toBe(0);

    // A zeroed block inside the high hash halves (sizes and seqs intact), then one flipped bit in each
    // of a few entries' hashes and seqs: each refused by its checksum, and every key still held.
    const all = [...a, ...b, 'c'];
    const refusedThenHeld = async (damage: (bytes: Buffer) => void): Promise<SpawnedSluice> => {
      const bytes = readFileSync(snapshot());
      expect(bytes.length).toBe(32 + 3001 * 16);
      damage(bytes);
      writeFileSync(snapshot(), bytes);
      const node = await start(env);
      expect(node.logLines().some((l) => l.includes('dedupe index snapshot not used') && l.includes('checksum mismatch'))).toBe(true);
      expect(await loaded(node)).toMatchObject({ from_snapshot: 0, from_journal: 3001, keys: 3001 });
      const repeats = await post(node, all, (k) => ({ k, again: true }));
      expect(repeats.filter((r) => !r.duplicate || r.id !== ids.get(r.dedupe_key)).map((r) => `${r.dedupe_key} ${r.id}`)).toEqual([]);
      return node;
    };
    ids.set('c', fresh?.id ?? '');
    const fifth = await refusedThenHeld((bytes) => bytes.fill(0, 32 + 4 * 3001 + 400, 32 + 4 * 3001 + 4400));
    fifth.proc.kill('SIGTERM');
    expect(await fifth.proc.exited).toBe(0);
    const sixth = await refusedThenHeld((bytes) => {
      for (const entry of [0, 7, 1500, 3000]) {
        bytes[32 + 4 * 3001 + 4 * entry] = (bytes[32 + 4 * 3001 + 4 * entry] ?? 0) ^ 0x10;
        bytes[32 + 8 * 3001 + 8 * entry + 2] = (bytes[32 + 8 * 3001 + 8 * entry + 2] ?? 0) ^ 0x01;
      }
    });

    await db.sql`ALTER TABLE outbox_held RENAME TO outbox`;
    await eventually(async () => (await db.sql`SELECT 1 FROM outbox`).length === 3001, 30_000, 'backlog forwarded');
    const rows = await db.sql<{ dedupe_key: string; payload: { k: string; again?: boolean } }[]>`SELECT dedupe_key, payload_text::jsonb AS payload FROM outbox`;
    expect(rows.filter((r) => r.payload.k !== r.dedupe_key || r.payload.again !== undefined)).toEqual([]);
    sixth.proc.kill('SIGTERM');
    expect(await sixth.proc.exited).toBe(0);
  }, 120_000);
});

describe('the dedupe index rebuilt from the journal keeps the last SLUICE_RECENT_KEYS forwarded keys', () => {
  let db: TestDatabase;
  let dir: string;
  let env: Record<string, string>;
  const snapshot = (): string => join(dir, 'journal', 'rk-node', KEY_SNAPSHOT_FILE);

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-recent-'));
    env = {
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'rk-node',
      SLUICE_RECENT_KEYS: '500',
      // Many small segments: the rebuild starts inside an older one, before the checkpoint's.
      SLUICE_JOURNAL_SEGMENT_BYTES: '8192',
      SLUICE_DEDUPE_SNAPSHOT_MS: '3600000',
    };
  }, 60_000);

  afterAll(async () => {
    await killAll();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  // In batches of 100: the journal rotates between batches, so the segments hold 100 records each.
  const post = async (node: SpawnedSluice, keys: string[]): Promise<Result[]> => {
    const results: Result[] = [];
    for (let i = 0; i < keys.length; i += 100) {
      const res = await fetch(`${node.url}/v1/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'acme' },
        body: keys.slice(i, i + 100).map((k) => JSON.stringify({ dedupe_key: k, payload: { k } })).join('\n'),
      });
      expect(res.status).toBe(202);
      results.push(...((await res.json()) as { results: Result[] }).results);
    }
    return results;
  };
  const forwardedAll = (n: number): Promise<void> => eventually(async () => (await db.sql`SELECT 1 FROM outbox`).length === n, 30_000, `${n} forwarded`);
  const stop = async (node: SpawnedSluice): Promise<void> => {
    node.proc.kill('SIGTERM');
    expect(await node.proc.exited).toBe(0);
  };

  test('after an old snapshot (journal forwarded far past it) and after a lost one', async () => {
    const x = Array.from({ length: 1500 }, (_, i) => `x${i}`);
    const y = Array.from({ length: 1500 }, (_, i) => `y${i}`);
    const ids = new Map<string, string>();

    const first = await start(env);
    for (const r of await post(first, x)) ids.set(r.dedupe_key, r.id);
    await forwardedAll(1500);
    await stop(first);
    const old = join(dir, 'old-snapshot.bin');
    copyFileSync(snapshot(), old);

    const second = await start(env);
    for (const r of await post(second, y)) ids.set(r.dedupe_key, r.id);
    await forwardedAll(3000);
    await stop(second);

    // Valid, but through seq 1500 with the checkpoint at 3000: the 500 records before it are read.
    const newest = y.slice(-500);
    const held = async (node: SpawnedSluice): Promise<void> => {
      const repeats = await post(node, newest);
      expect(repeats.filter((r) => !r.duplicate || r.id !== ids.get(r.dedupe_key)).map((r) => `${r.dedupe_key} ${r.id}`)).toEqual([]);
    };
    copyFileSync(old, snapshot());
    const third = await start(env);
    expect(await loaded(third)).toMatchObject({ from_snapshot: 500, from_journal: 500, keys: 500 });
    await held(third);
    third.proc.kill('SIGKILL');
    await third.proc.exited;

    // No snapshot at all: reported, and the same window read.
    rmSync(snapshot());
    const fourth = await start(env);
    expect(fourth.logLines().some((l) => l.includes('no dedupe index snapshot'))).toBe(true);
    expect(await loaded(fourth)).toMatchObject({ from_snapshot: 0, from_journal: 500, keys: 500 });
    await held(fourth);
    // Just outside the window: not held any more, answered as new (the outbox's constraint drops it).
    const [outside] = await post(fourth, ['y999']);
    expect(outside?.duplicate).toBe(false);
    await stop(fourth);

    // Retention deleted the forwarded segments up to one starting after seq 2700: the rebuild reads
    // what the files still hold of the window, from the oldest segment left.
    rmSync(snapshot());
    const nodeDir = join(dir, 'journal', 'rk-node');
    const segments = readdirSync(nodeDir).filter((f) => /^\d{20}\.jsonl/.test(f)).sort();
    const firstSeqs = segments.map((f) => Number(f.slice(0, 20)));
    const keep = firstSeqs.findIndex((seq) => seq > 2700);
    expect(keep).toBeGreaterThan(0);
    for (const f of segments.slice(0, keep)) rmSync(join(nodeDir, f));
    const oldestLeft = firstSeqs[keep] ?? 0;
    const fifth = await start(env);
    // Seqs oldestLeft..3001 (3001: y999 again).
    expect(await loaded(fifth)).toMatchObject({ from_snapshot: 0, from_journal: 3002 - oldestLeft });
    const left = y.slice(oldestLeft - 1501);
    const repeats = await post(fifth, left);
    expect(repeats.filter((r) => !r.duplicate || r.id !== ids.get(r.dedupe_key)).map((r) => `${r.dedupe_key} ${r.id}`)).toEqual([]);
    await stop(fifth);
  }, 120_000);

  test('regression: a snapshot taken under a larger SLUICE_RECENT_KEYS sizes the index for the setting of the restart, not for all it holds', async () => {
    // An outside tester: 4 million keys snapshotted, a restart with the default window left 96 MiB of index for 100,000 keys.
    const big = { ...env, SLUICE_NODE_ID: 'rk-shrink', SLUICE_JOURNAL_DIR: join(dir, 'journal-shrink'), SLUICE_RECENT_KEYS: '20000', SLUICE_JOURNAL_SEGMENT_BYTES: String(64 * 1024 * 1024) };
    const z = Array.from({ length: 20_000 }, (_, i) => `z${i}`);
    const ids = new Map<string, string>();
    const first = await start(big);
    for (const r of await post(first, z)) ids.set(r.dedupe_key, r.id);
    await eventually(async () => (await db.sql`SELECT 1 FROM outbox WHERE dedupe_key LIKE 'z%'`).length === 20_000, 30_000, '20,000 forwarded');
    await stop(first);

    const second = await start({ ...big, SLUICE_RECENT_KEYS: '500' });
    // 500 keys in the smallest index (4,096 places of 24 bytes); 20,000 (32,768 places) before the fix.
    expect(await loaded(second)).toMatchObject({ from_snapshot: 500, from_journal: 0, keys: 500, index_bytes: 4096 * 24 });
    const repeats = await post(second, z.slice(-500));
    expect(repeats.filter((r) => !r.duplicate || r.id !== ids.get(r.dedupe_key)).map((r) => `${r.dedupe_key} ${r.id}`)).toEqual([]);
    await stop(second);
  }, 120_000);
});

describe('the first start without a snapshot serves at once, whatever the unforwarded backlog', () => {
  const RECORDS = 400_000;
  let db: TestDatabase;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sluice-upgrade-'));
    env = {
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'growth',
      SLUICE_MAX_UNFORWARDED: '1000000',
      SLUICE_DEDUPE_SNAPSHOT_MS: '3600000',
    };
    // Forwarding blocked: the whole journal stays unforwarded, as a node that restarts with a backlog.
    await db.sql`ALTER TABLE outbox RENAME TO outbox_held`;
    // What a node of the release before snapshots left: a journal and no dedupe-index.bin.
    await fillJournal(join(dir, 'journal'), 'growth', RECORDS, 'old');
  }, 120_000);

  afterAll(async () => {
    await killAll();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${RECORDS} unforwarded records: /readyz 200 before the index is read; repeats are duplicates, fresh keys accepted once`, async () => {
    const spawned = performance.now();
    const node = await start(env);
    let readyMs = Number.POSITIVE_INFINITY;
    await eventually(async () => {
      const ok = (await fetch(`${node.url}/readyz`)).status === 200;
      if (ok) readyMs = performance.now() - spawned;
      return ok;
    }, 10_000, '/readyz 200');
    const indexLoadedBeforeReady = node.logLines().some((l) => l.includes('"dedupe index loaded"'));
    console.log(`ready after ${readyMs.toFixed(0)} ms from spawn (process start included; machine shared and loaded)`);
    expect(indexLoadedBeforeReady).toBe(false);
    expect(node.logLines().some((l) => l.includes('no dedupe index snapshot; reading the journal in the background'))).toBe(true);

    const send = (key: string): Promise<Response> =>
      fetch(`${node.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'g999' }, body: JSON.stringify({ dedupe_key: key, payload: { again: true } }) });
    // The last record written, so the last one the rebuild reads: asked before it got there.
    const repeat = await send(`old-${RECORDS - 1}`);
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toMatchObject({ duplicate: true, id: `growth:${RECORDS}` });
    const fresh = await send('new-1');
    expect(fresh.status).toBe(202);
    expect(await fresh.json()).toMatchObject({ duplicate: false, id: `growth:${RECORDS + 1}` });
    expect((await send('new-1')).status).toBe(200);
    // Logged when the rebuild ended, before the fresh key was journaled.
    expect(await loaded(node)).toMatchObject({ from_snapshot: 0, from_journal: RECORDS, keys: RECORDS });
  }, 120_000);

  test('regression (issue 15): the journal after an older snapshot (as a kill -9 leaves it) is read in the background too', async () => {
    await killAll();
    // A clean stop writes a snapshot of everything; then more records arrive after it, unforwarded.
    const first = await start(env);
    await loaded(first);
    first.proc.kill('SIGTERM');
    expect(await first.proc.exited).toBe(0);
    const TAIL = 200_000;
    await fillJournal(join(dir, 'journal'), 'growth', TAIL, 'tail');
    const node = await start(env);
    await eventually(async () => (await fetch(`${node.url}/readyz`)).status === 200, 10_000, '/readyz 200');
    expect(node.logLines().some((l) => l.includes('"dedupe index loaded"'))).toBe(false);
    const repeat = await fetch(`${node.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': `g${(TAIL - 1) % 1000}` },
      body: JSON.stringify({ dedupe_key: `tail-${TAIL - 1}`, payload: { again: true } }),
    });
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toMatchObject({ duplicate: true });
    expect(await loaded(node)).toMatchObject({ from_journal: TAIL });
    expect((await loaded(node))?.from_snapshot).toBeGreaterThan(0);
  }, 120_000);
});
