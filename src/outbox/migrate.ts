import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import type { Sql } from './db.ts';

const migrationsDir = join(import.meta.dir, '..', '..', 'migrations');
// Any constant works; it only has to be the same in every sluice process.
const MIGRATION_LOCK = 0x511ce;

export interface MigrationResult {
  applied: string[];
  current: string | undefined;
}

/**
 * Applies migrations/*.sql in name order, each recorded in sluice_migrations. Everything runs in one
 * transaction under a transaction-level advisory lock, so concurrent starters wait for the first and
 * then find nothing left to do, and a failed migration leaves no trace.
 */
export async function migrate(sql: Sql, log: Logger, dir = migrationsDir): Promise<MigrationResult> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`CREATE TABLE IF NOT EXISTS sluice_migrations (
      version text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`;
    const done = new Set((await tx<{ version: string }[]>`SELECT version FROM sluice_migrations`).map((r) => r.version));
    for (const file of files) {
      const version = file.replace(/\.sql$/, '');
      if (done.has(version)) continue;
      await tx.unsafe(await readFile(join(dir, file), 'utf8'));
      await tx`INSERT INTO sluice_migrations (version) VALUES (${version})`;
      applied.push(version);
      log.info('migration applied', { version });
    }
  });
  return { applied, current: files.at(-1)?.replace(/\.sql$/, '') };
}
