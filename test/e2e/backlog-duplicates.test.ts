import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startRole } from '../../src/roles/start.ts';
import { sha256 } from '../../src/tenant-tokens.ts';
import { createTestDatabase, quietLog } from '../support/postgres.ts';

const TOKEN = 'acme-token-0123456789abcdef';

for (const mode of ['sync', 'fast_ack'] as const) {
  describe(`${mode}: a tenant over its max_pending`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-maxpending-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test('gets 429 for new keys, and 200 duplicate for keys already written', async () => {
      const db = await createTestDatabase({ migrate: false });
      const tenantsFile = join(dir, 'tenants.json');
      writeFileSync(tenantsFile, JSON.stringify({ tenants: { acme: { tokens: [`sha256:${sha256(TOKEN).toString('hex')}`], max_pending: 2 } } }));
      const config = loadConfig({ DATABASE_URL: db.url, SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(dir, 'journal'), SLUICE_NODE_ID: 'mp', SLUICE_WRITE_MODE: mode, SLUICE_TENANTS_FILE: tenantsFile });
      // Ingest alone: nothing publishes, so what is written stays pending.
      const running = await startRole('ingest', config, quietLog);
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
  });
}
