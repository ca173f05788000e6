import postgres from 'postgres';
import type { Logger } from '../log.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.ts';

export type Sql = postgres.Sql;

export interface Database {
  readonly sql: Sql;
  /** `postgres` for a real server, `embedded` for PGlite behind a loopback socket. */
  readonly kind: 'postgres' | 'embedded';
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url: string | undefined;
  dataDir: string;
  pool: number;
}

/**
 * Opens the outbox database. With a URL, a postgres.js pool to that server; without one, an embedded
 * PGlite served on a loopback socket so that the same postgres.js code and SQL serve both.
 */
export async function openDatabase(opts: DatabaseOptions, log: Logger): Promise<Database> {
  if (opts.url !== undefined) {
    const sql = connect(opts.url, opts.pool);
    return { sql, kind: 'postgres', close: once(() => sql.end({ timeout: 5 })) };
  }
  const embedded: EmbeddedPostgres = await startEmbeddedPostgres(opts.dataDir, log);
  // pglite-socket shares one Postgres session among its connections: one connection only.
  const sql = connect(embedded.url, 1);
  return {
    sql,
    kind: 'embedded',
    close: once(async () => {
      await sql.end({ timeout: 5 });
      await embedded.close();
    }),
  };
}

function connect(url: string, max: number): Sql {
  return postgres(url, {
    max,
    onnotice: () => {},
    // Bigint ids come back as strings; sluice passes them through as strings in JSON.
    types: {},
    connection: { application_name: 'sluice' },
  });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
