import postgres from 'postgres';
import { createLogger } from '../../src/log.ts';
import type { Sql } from '../../src/outbox/db.ts';
import { migrate } from '../../src/outbox/migrate.ts';

/** The real Postgres the tests run against; each test file gets a database of its own on it. */
export const ADMIN_URL = process.env.SLUICE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export const quietLog = createLogger({ level: 'error' });

export interface TestDatabase {
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

export async function createTestDatabase(opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `sluice_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 4, onnotice: () => {} });
  if (opts.migrate !== false) await migrate(sql, quietLog);
  return {
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const a = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/**
 * Waits until every outbox row is settled: its inserting transaction older than every transaction
 * still running on the cluster. Other databases' transactions count too (the snapshot is cluster-wide),
 * so a claim straight after an insert may rightly come back empty while anything else is running.
 */
export async function waitSettled(sql: Sql, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await sql<{ settled: boolean }[]>`
      SELECT coalesce(max(xid) < pg_snapshot_xmin(pg_current_snapshot()), true) AS settled FROM outbox`;
    if (row?.settled === true) return;
    if (Date.now() > deadline) throw new Error(`outbox rows not settled after ${timeoutMs} ms: a transaction is held open`);
    await Bun.sleep(10);
  }
}
