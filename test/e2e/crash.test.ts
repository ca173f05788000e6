import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice } from '../support/spawn-sluice.ts';

describe('kill -9 during fast_ack writes', () => {
  let db: TestDatabase;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    dir = mkdtempSync(join(tmpdir(), 'sluice-crash-'));
    env = {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: (await testBrokers()).join(','),
      SLUICE_PORT: '0',
      SLUICE_WRITE_MODE: 'fast_ack',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'crash-node',
      SLUICE_KAFKA_TOPIC: `crash.${Bun.randomUUIDv7()}`,
      SLUICE_TRANSACTIONAL_ID_PREFIX: `crash-${Bun.randomUUIDv7()}`,
      // One process, so the kill -9 is the journal writer's own (a supervised node's is in workers.test.ts).
      SLUICE_PROCESSOR: 'inline',
    };
  }, 60_000);

  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every acknowledged write reaches the outbox exactly once after restart', async () => {
    const first = await spawnSluice(env);
    const acked = new Set<string>();
    let sent = 0;
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const key = `w${w}-${i}`;
        sent++;
        try {
          const res = await fetch(`${first.url}/v1/events`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'crash' },
            body: JSON.stringify({ dedupe_key: key, payload: { w, i } }),
          });
          if (res.status === 202) acked.add(key);
        } catch {
          return;
        }
      }
    };
    const writers = Array.from({ length: 8 }, (_, w) => writer(w));
    // Killed in the middle of a stream of writes, once well over a hundred were acknowledged.
    await eventually(async () => acked.size >= 200, 30_000, '200 acknowledged writes');
    first.proc.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    expect(await first.proc.exited).not.toBe(0);
    expect(acked.size).toBeGreaterThan(100);

    const second = await spawnSluice(env);
    try {
      // A repeat of an acknowledged write is still a duplicate after the crash.
      const someKey = [...acked].at(-1) ?? '';
      const repeat = await fetch(`${second.url}/v1/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'crash' },
        body: JSON.stringify({ dedupe_key: someKey, payload: {} }),
      });
      expect(repeat.status).toBe(200);

      await eventually(async () => {
        const rows = await db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox WHERE tenant_id = 'crash'`;
        const present = new Set(rows.map((r) => r.dedupe_key));
        return [...acked].every((k) => present.has(k));
      }, 30_000, 'every acknowledged write in the outbox');
      const [counts] = await db.sql<{ n: number; distinct_keys: number }[]>`
        SELECT count(*)::int AS n, count(DISTINCT dedupe_key)::int AS distinct_keys FROM outbox WHERE tenant_id = 'crash'`;
      expect(counts?.n).toBe(counts?.distinct_keys);
      expect(counts?.n ?? 0).toBeLessThanOrEqual(sent);
    } finally {
      second.proc.kill('SIGTERM');
      expect(await second.proc.exited).toBe(0);
    }
  }, 90_000);
});
