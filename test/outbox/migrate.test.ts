import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { readOutboxIdentity } from '../../src/outbox/identity.ts';
import { migrate } from '../../src/outbox/migrate.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';

describe('migrations', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  afterAll(() => db.drop());

  test('two processes migrating at once both succeed and apply each migration once', async () => {
    const a = postgres(db.url, { max: 1, onnotice: () => {} });
    const b = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [ra, rb] = await Promise.all([migrate(a, quietLog), migrate(b, quietLog)]);
      const all = ['0001_outbox', '0002_processor', '0003_outbox_identity', '0004_payload_text', '0005_forwarder_quarantine', '0006_sent_counts'];
      expect([...ra.applied, ...rb.applied].sort()).toEqual(all);
      const rows = await db.sql<{ version: string }[]>`SELECT version FROM sluice_migrations ORDER BY version`;
      expect(rows.map((r) => r.version)).toEqual(all);
      const again = await migrate(a, quietLog);
      expect(again.applied).toEqual([]);
      expect(again.current).toBe('0006_sent_counts');
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  test('creates the outbox with its unique (tenant_id, dedupe_key) and partial pending index', async () => {
    const idx = await db.sql<{ indexname: string; indexdef: string }[]>`
      SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outbox' ORDER BY indexname`;
    const byName = new Map(idx.map((i) => [i.indexname, i.indexdef]));
    expect(byName.get('outbox_tenant_dedupe')).toContain('UNIQUE');
    expect(byName.get('outbox_pending')).toContain("WHERE (status = 'pending'::text)");
  });

  test('the outbox has one identity of its own, kept across migrations; another database has another', async () => {
    const identity = await readOutboxIdentity(db.sql);
    expect(identity).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await migrate(db.sql, quietLog);
    expect(await readOutboxIdentity(db.sql)).toBe(identity);
    await expect(db.sql`INSERT INTO outbox_identity DEFAULT VALUES`).rejects.toThrow();
    const other = await createTestDatabase();
    try {
      expect(await readOutboxIdentity(other.sql)).not.toBe(identity);
    } finally {
      await other.drop();
    }
  });
});
