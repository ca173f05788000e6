import { describe, expect, test } from 'bun:test';
import { eventually, postEvent, sluiceFixture } from '../support/sluice.ts';

interface Ready {
  status: string;
  components: Record<string, { ok: boolean; required: boolean; detail?: string }>;
}

describe('a fast_ack node whose backlog is full', () => {
  const f = sluiceFixture({ SLUICE_WRITE_MODE: 'fast_ack', SLUICE_MAX_UNFORWARDED: '1000', SLUICE_RECENT_KEYS: '10' });
  const readyz = async (): Promise<{ status: number; body: Ready }> => {
    const res = await fetch(`${f.sluice.url}/readyz`);
    return { status: res.status, body: (await res.json()) as Ready };
  };
  const ndjson = (keys: string[]): Promise<Response> =>
    fetch(`${f.sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'acme' },
      body: keys.map((k) => JSON.stringify({ dedupe_key: k, payload: { k } })).join('\n'),
    });

  test('is not ready, still answers repeats of held keys as duplicates, refuses new keys, and recovers once forwarding resumes', async () => {
    const first = await postEvent(f.sluice.url, { dedupe_key: 'k0', payload: { k: 'k0' } }, { 'X-Tenant-Id': 'acme' });
    expect(first.status).toBe(202);
    const firstId = ((await first.json()) as { id: string }).id;
    await eventually(async () => (await f.db.sql`SELECT 1 FROM outbox WHERE dedupe_key = 'k0'`).length === 1, 10_000, 'k0 forwarded');
    const ready = await readyz();
    expect(ready.status).toBe(200);
    // Regression (outside test): a forwarder failing 30 s through a database outage made every
    // fast_ack node not ready together, though each still made writes durable in its journal. The
    // backlog component below is what takes such a node out of rotation.
    expect(ready.body.components.forwarder).toEqual({ ok: true, required: false });
    expect(ready.body.components.backlog).toEqual({ ok: true, required: true });

    // The outbox refuses every insert: forwarding stops and the journal fills up to the limit.
    await f.db.sql`ALTER TABLE outbox RENAME TO outbox_held`;
    const keys = Array.from({ length: 1000 }, (_, i) => `k${i + 1}`);
    const filled = await ndjson(keys);
    expect(filled.status).toBe(202);
    const ids = new Map(((await filled.json()) as { results: { dedupe_key: string; id: string }[] }).results.map((r) => [r.dedupe_key, r.id]));

    const full = await readyz();
    expect(full.status).toBe(503);
    expect(full.body.status).toBe('not_ready');
    expect(full.body.components.backlog?.ok).toBe(false);
    expect(full.body.components.backlog?.detail).toContain('SLUICE_MAX_UNFORWARDED=1000');

    // Repeats of held keys, unforwarded and forwarded alike, take no room: answered at once as duplicates.
    for (const [key, id] of [['k500', ids.get('k500')], ['k1000', ids.get('k1000')], ['k0', firstId]] as const) {
      const again = await postEvent(f.sluice.url, { dedupe_key: key, payload: { again: true } }, { 'X-Tenant-Id': 'acme' });
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ id, dedupe_key: key, duplicate: true, durability: 'journal' });
    }
    const repeats = await ndjson(['k1', 'k2', 'k3']);
    expect(repeats.status).toBe(202);
    expect(await repeats.json()).toMatchObject({ accepted: 0, duplicates: 3 });

    // A new key needs room there is none of: 429 after the wait, and nothing journaled for it.
    const fresh = await postEvent(f.sluice.url, { dedupe_key: 'new', payload: {} }, { 'X-Tenant-Id': 'acme' });
    expect(fresh.status).toBe(429);
    expect(fresh.headers.get('Retry-After')).toBe('1');
    expect(((await fresh.json()) as { error: { code: string } }).error.code).toBe('backlog_full');
    const mixed = await ndjson(['k7', 'new']);
    expect(mixed.status).toBe(429);

    await f.db.sql`ALTER TABLE outbox_held RENAME TO outbox`;
    await eventually(async () => (await readyz()).status === 200, 30_000, 'ready again');
    await eventually(async () => (await f.db.sql`SELECT 1 FROM outbox WHERE tenant_id = 'acme'`).length === 1001, 30_000, 'backlog forwarded');
    const rows = await f.db.sql<{ dedupe_key: string; payload: { k?: string } }[]>`SELECT dedupe_key, payload_text::jsonb AS payload FROM outbox WHERE tenant_id = 'acme'`;
    expect(rows.some((r) => r.dedupe_key === 'new')).toBe(false);
    // Each key holds its first write, never a repeat's payload.
    expect(rows.every((r) => r.payload.k === r.dedupe_key)).toBe(true);
  }, 90_000);
});
