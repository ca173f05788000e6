import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { openDatabase, type Database, type Sql } from '../../src/outbox/db.ts';
import { migrate } from '../../src/outbox/migrate.ts';
import { partitionOf } from '../../src/outbox/partition.ts';
import { claimForTenants, markSent } from '../../src/outbox/claims.ts';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { pendingByTenant } from '../../src/outbox/counts.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import { claimedKeys, claimedText } from '../support/claimed-text.ts';
import { createTestDatabase, quietLog, waitSettled, type TestDatabase } from '../support/postgres.ts';

function row(tenant: string, key: string, payload = JSON.stringify({ key })): NewOutboxRow {
  return {
    tenant_id: tenant,
    dedupe_key: key,
    partition: partitionOf(tenant, 16),
    topic: 'events',
    payload,
    headers: { source: 'test' },
    request_id: `req-${key}`,
    traceparent: undefined,
    ingested_at: '2026-11-25T10:00:00.000Z',
  };
}

interface Backend {
  name: string;
  open(): Promise<{ sql: Sql; close(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'real postgres',
    async open() {
      const db: TestDatabase = await createTestDatabase();
      return { sql: db.sql, close: () => db.drop() };
    },
  },
  {
    name: 'embedded pglite',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-pglite-'));
      const db: Database = await openDatabase({ url: undefined, dataDir: dir, pool: 4 }, quietLog);
      await migrate(db.sql, quietLog);
      return {
        sql: db.sql,
        async close() {
          await db.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

for (const backend of backends) {
  describe(`outbox repository on ${backend.name}`, () => {
    let sql: Sql;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ sql, close } = await backend.open());
    }, 60_000);
    afterAll(() => close());
    beforeEach(async () => {
      await sql`TRUNCATE outbox`;
    });

    test('inserts a batch and returns ids in input order', async () => {
      const results = await insertRows(sql, [row('acme', 'a'), row('acme', 'b'), row('globex', 'a')]);
      expect(results.map((r) => r.duplicate)).toEqual([false, false, false]);
      const stored = await sql<{ id: string; tenant_id: string; dedupe_key: string; payload: unknown; headers: unknown; status: string }[]>`
        SELECT id::text, tenant_id, dedupe_key, payload_text AS payload, headers, status FROM outbox ORDER BY id`;
      expect(stored.map((s) => s.id)).toEqual(results.map((r) => r.id));
      expect(stored.map((s) => [s.tenant_id, s.dedupe_key, s.status])).toEqual([
        ['acme', 'a', 'pending'],
        ['acme', 'b', 'pending'],
        ['globex', 'a', 'pending'],
      ]);
      expect(stored[0]?.payload).toBe('{"key":"a"}');
      expect(stored[0]?.headers).toEqual({ source: 'test' });
    });

    test('a repeated (tenant, dedupe_key) is a duplicate with the first id, in later batches and within one', async () => {
      const [first] = await insertRows(sql, [row('acme', 'k', '{"v":1}')]);
      const again = await insertRows(sql, [row('acme', 'k', '{"v":2}'), row('acme', 'new'), row('acme', 'new')]);
      expect(again[0]).toEqual({ id: first?.id ?? '', duplicate: true });
      expect(again[1]?.duplicate).toBe(false);
      expect(again[2]).toEqual({ id: again[1]?.id ?? '', duplicate: true });
      const [stats] = await sql<{ n: number; payload: unknown }[]>`
        SELECT count(*)::int AS n, (array_agg(payload_text ORDER BY id))[1] AS payload FROM outbox`;
      expect(stats).toEqual({ n: 2, payload: '{"v":1}' });
    });

    test('text of every shape reaches its column unchanged: quotes, backslashes, braces, line breaks, NULL, emoji', async () => {
      const awkward = ['a"b', 'back\\slash\\"', '{x,y}', 'line\nbreak\ttab\r', 'NULL', '', ' spaced ', 'ü€😀', 'a\u0001b', '\\u0041'];
      const rows = awkward.map((text, i): NewOutboxRow => ({
        ...row(`t${text}`, `k${i}${text}`, JSON.stringify({ text })),
        headers: { text },
        request_id: text,
        traceparent: i % 2 === 0 ? undefined : text,
      }));
      const results = await insertRows(sql, rows);
      expect(results.map((r) => r.duplicate)).toEqual(awkward.map(() => false));
      const stored = await sql<{ id: string; tenant_id: string; dedupe_key: string; payload: string; headers: unknown; request_id: string; traceparent: string | null }[]>`
        SELECT id::text, tenant_id, dedupe_key, payload_text AS payload, headers, request_id, traceparent FROM outbox ORDER BY outbox.id`;
      expect([...stored]).toEqual(
        rows.map((r, i) => ({
          id: results[i]?.id ?? '',
          tenant_id: r.tenant_id,
          dedupe_key: r.dedupe_key,
          payload: r.payload,
          headers: r.headers,
          request_id: r.request_id,
          traceparent: r.traceparent ?? null,
        })),
      );
    });

    test('ids come back in input order when duplicates sit anywhere in the batch', async () => {
      const [kept] = await insertRows(sql, [row('acme', 'old')]);
      const batch = ['n1', 'old', 'n2', 'n1', 'n3', 'old', 'n2'].map((k) => row('acme', k));
      const results = await insertRows(sql, batch);
      expect(results.map((r) => r.duplicate)).toEqual([false, true, false, true, false, true, true]);
      const ids = new Map((await sql<{ id: string; dedupe_key: string }[]>`SELECT id::text, dedupe_key FROM outbox`).map((r) => [r.dedupe_key, r.id]));
      expect(results.map((r) => r.id)).toEqual(batch.map((r) => ids.get(r.dedupe_key) ?? ''));
      expect(ids.get('old')).toBe(kept?.id ?? '');
      // New rows take ids in input order.
      expect(Number(ids.get('n1'))).toBeLessThan(Number(ids.get('n2')));
      expect(Number(ids.get('n2'))).toBeLessThan(Number(ids.get('n3')));
    });

    test('a batch of 1,000 rows gets its ids in input order', async () => {
      const batch = Array.from({ length: 1_000 }, (_, i) => row(`t${i % 7}`, `k${i}`));
      const results = await insertRows(sql, batch);
      const stored = await sql<{ id: string; dedupe_key: string }[]>`SELECT id::text, dedupe_key FROM outbox ORDER BY outbox.id`;
      expect(stored.map((r) => r.dedupe_key)).toEqual(batch.map((r) => r.dedupe_key));
      expect(results).toEqual(stored.map((r) => ({ id: r.id, duplicate: false })));
    });

    test('claims pending rows in id order and no longer claims them once marked sent', async () => {
      const ids = (await insertRows(sql, Array.from({ length: 5 }, (_, i) => row('acme', `k${i}`)))).map((r) => r.id);
      const p = partitionOf('acme', 16);
      await waitSettled(sql);
      const { rows: claimed } = await claimForTenants(sql, p, new Map([['acme', 3]]));
      expect(claimed.map((c) => c.id)).toEqual(ids.slice(0, 3));
      const first = claimed[0];
      expect(first === undefined ? undefined : claimedText(first)).toMatchObject({
        tenant_id: 'acme',
        topic: 'events',
        bytes: { dedupe_key: 'k0', payload: '{"key":"k0"}', request_id: 'req-k0', traceparent: null, ingested_at: '2026-11-25T10:00:00.000Z' },
      });
      expect(await markSent(sql, claimed.map((c) => c.id))).toBe(3);
      expect((await claimForTenants(sql, p, new Map([['acme', 10]]))).rows.map((c) => c.id)).toEqual(ids.slice(3));
      expect(await pendingByTenant(sql)).toEqual(new Map([['acme', 2]]));
    });

    test('an Outbox tells which partitions rows entered through it since it was last asked, once', async () => {
      const outbox = new Outbox(sql, 16);
      const tenants = ['acme', 'beta', 'gamma'];
      expect(new Set(tenants.map((t) => partitionOf(t, 16))).size).toBe(3);
      await outbox.insert([row('acme', 'e1'), row('beta', 'e1'), row('acme', 'e2')]);
      expect(outbox.takeEntered().sort()).toEqual([partitionOf('acme', 16), partitionOf('beta', 16)].sort());
      expect(outbox.takeEntered()).toEqual([]);
      await outbox.insertIsolating([row('gamma', 'e1')]);
      expect(outbox.takeEntered()).toEqual([partitionOf('gamma', 16)]);
      // A failed insert wakes nothing: no row entered.
      await sql`ALTER TABLE outbox RENAME TO outbox_away`;
      try {
        expect(await outbox.insert([row('beta', 'e2')]).then(() => 'inserted', () => 'failed')).toBe('failed');
      } finally {
        await sql`ALTER TABLE outbox_away RENAME TO outbox`;
      }
      expect(outbox.takeEntered()).toEqual([]);
    });
  });
}

describe('claim ordering on real postgres', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  test('a row committed by a newer transaction waits while an older transaction is still open', async () => {
    const other = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      let opened!: () => void;
      const isOpen = new Promise<void>((r) => {
        opened = r;
      });
      // An older transaction takes its id first (lower outbox id) but commits last.
      const slow = other.begin(async (tx) => {
        await insertRows(tx as unknown as Sql, [row('acme', 'early')]);
        opened();
        await held;
      });
      await isOpen;
      await insertRows(db.sql, [row('acme', 'late')]);
      const claim = async () => (await claimForTenants(db.sql, partitionOf('acme', 16), new Map([['acme', 10]]))).rows;
      expect(await claim()).toEqual([]);
      release();
      await slow;
      await waitSettled(db.sql);
      expect(claimedKeys(await claim())).toEqual(['early', 'late']);
    } finally {
      await other.end();
    }
  });
});
