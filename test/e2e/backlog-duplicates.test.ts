import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startRole, type Running } from '../../src/roles/start.ts';
import { sha256 } from '../../src/tenant-tokens.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';

const TOKEN = 'acme-token-0123456789abcdef';

for (const mode of ['sync', 'fast_ack'] as const) {
  describe(`${mode}: a tenant over its max_pending`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-maxpending-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    /** Ingest alone, for tenant acme with this max_pending: nothing publishes, so what is written stays pending. */
    async function startIngest(name: string, maxPending: number): Promise<{ db: TestDatabase; running: Running }> {
      const db = await createTestDatabase({ migrate: false });
      const tenantsFile = join(dir, `${name}.json`);
      writeFileSync(tenantsFile, JSON.stringify({ tenants: { acme: { tokens: [`sha256:${sha256(TOKEN).toString('hex')}`], max_pending: maxPending } } }));
      const config = loadConfig({ DATABASE_URL: db.url, SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(dir, name), SLUICE_NODE_ID: name, SLUICE_WRITE_MODE: mode, SLUICE_TENANTS_FILE: tenantsFile });
      return { db, running: await startRole('ingest', config, quietLog) };
    }

    test('gets 429 for new keys, and 200 duplicate for keys already written', async () => {
      const { db, running } = await startIngest('mp', 2);
      const post = (keys: string[]): Promise<Response> =>
        fetch(`${running.url}/v1/events`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-ndjson', Authorization: `Bearer ${TOKEN}` },
          body: keys.map((k) => JSON.stringify({ dedupe_key: k, payload: { k } })).join('\n'),
        });
      try {
        const first = await post(['k1', 'k2']);
        expect(first.status).toBe(202);
        const ids = ((await first.json()) as { results: { id: string }[] }).results.map((r) => r.id);

        const fresh = await post(['k3']);
        expect(fresh.status).toBe(429);
        expect(((await fresh.json()) as { error: { code: string } }).error.code).toBe('backlog_full');
        expect((await post(['k1', 'k3'])).status).toBe(429);

        const again = await fetch(`${running.url}/v1/events`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
          body: JSON.stringify({ dedupe_key: 'k2', payload: { again: true } }),
        });
        expect(again.status).toBe(200);
        const body = (await again.json()) as { duplicate: boolean; id: string };
        expect(body.duplicate).toBe(true);
        // fast_ack answers with the journal position; sync with the outbox id it already had.
        if (mode === 'fast_ack') expect(body.id).toBe(ids[1] ?? '');
        const both = await post(['k1', 'k2']);
        expect(both.status).toBe(202);
        expect(await both.json()).toMatchObject({ accepted: 0, duplicates: 2 });

        await running.shutdown('test');
        const rows = await db.sql<{ dedupe_key: string; payload: { k?: string } }[]>`SELECT dedupe_key, payload_text::jsonb AS payload FROM outbox ORDER BY dedupe_key`;
        expect(rows.map((r) => [r.dedupe_key, r.payload.k])).toEqual([
          ['k1', 'k1'],
          ['k2', 'k2'],
        ]);
      } finally {
        await running.shutdown('test');
        await db.drop();
      }
    }, 60_000);

    test('regression (outside test): concurrent batches count from their admission, so they pass the limit by one request at most', async () => {
      // 20 concurrent batches of 500 lines against a limit of 50 once left 3,000 pending: each was
      // counted only once written, so all that arrived before the first write ended were admitted.
      const { db, running } = await startIngest('mpc', 50);
      try {
        const statuses = await Promise.all(
          Array.from({ length: 20 }, async (_, r) => {
            const res = await fetch(`${running.url}/v1/events`, {
              method: 'POST',
              headers: { 'Content-Type': 'application/x-ndjson', Authorization: `Bearer ${TOKEN}` },
              body: Array.from({ length: 500 }, (_, i) => JSON.stringify({ dedupe_key: `r${r}-${i}`, payload: { i } })).join('\n'),
            });
            await res.arrayBuffer();
            return res.status;
          }),
        );
        expect(statuses.filter((s) => s === 202).length).toBe(1);
        expect(statuses.filter((s) => s === 429).length).toBe(19);
        await running.shutdown('test');
        const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
        expect(row?.n).toBe(500);
      } finally {
        await running.shutdown('test');
        await db.drop();
      }
    }, 60_000);
  });
}
