import postgres from 'postgres';
import { createLogger } from '../src/log.ts';
import type { Sql } from '../src/outbox/db.ts';
import { migrate } from '../src/outbox/migrate.ts';

export interface BenchDatabase {
  name: string;
  url: string;
  sql: Sql;
  /** Empties the outbox and checkpoints, so each scenario starts from the same table and pays only its own writes. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export const ADMIN_URL = process.env.SLUICE_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const NAME = 'sluice_bench';

/** Drops and recreates `sluice_bench` (or `name`) on the local Postgres and applies the migrations. */
export async function freshDatabase(name = NAME): Promise<BenchDatabase> {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  await migrate(sql, createLogger({ level: 'warn' }));
  return {
    name,
    url: url.toString(),
    sql,
    reset: () => resetOutbox(sql),
    close: () => sql.end({ timeout: 5 }),
  };
}

/**
 * Empties the outbox and writes a checkpoint: the dirty pages and WAL a scenario leaves are flushed
 * now, not by the checkpointer during the next scenario's measured interval, where the CPU meter
 * charged them to that scenario (the end-to-end row once read 117.6 µs of Postgres an event, 28.1 run
 * alone). Without the right to CHECKPOINT (neither superuser nor pg_checkpoint) the table is emptied
 * all the same.
 */
export async function resetOutbox(sql: Sql): Promise<void> {
  // No ANALYZE here: statistics of an empty table make the planner pick a bitmap scan of every
  // pending row for the processor's claim once the table fills (93 ms against 16 ms per claim at
  // 200k pending rows). After TRUNCATE it sizes the table from its pages, as in a long-running sluice.
  await sql`TRUNCATE outbox`;
  await sql`CHECKPOINT`.catch((err: unknown) => {
    if ((err as { code?: unknown }).code !== '42501') throw err;
  });
}
