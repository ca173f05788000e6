import postgres from 'postgres';
import type { Logger } from '../log.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.ts';

export type Sql = postgres.Sql;

export interface Database {
  readonly sql: Sql;
  /** `postgres` for a real server, `embedded` for PGlite behind a loopback socket. */
  readonly kind: 'postgres' | 'embedded';
  /**
   * A new client of one connection, for state that lives in a session (advisory locks); `onClose`
   * runs when that connection closes. Never timed out for idleness or age: that would drop the locks.
   */
  session(onClose: () => void): Sql;
  /** Settles with a reason when the database is gone for good (the embedded one's process exited); never for a server. */
  readonly lost: Promise<string>;
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
    const url = opts.url;
    const sql = connect(url, opts.pool);
    return { sql, kind: 'postgres', session: (onClose) => connect(url, 1, onClose), lost: new Promise(() => {}), close: once(() => sql.end({ timeout: 5 })) };
  }
  const embedded: EmbeddedPostgres = await startEmbeddedPostgres(opts.dataDir, log);
  // pglite-socket shares one Postgres session among its connections: one connection only.
  const sql = connect(embedded.url, 1);
  return {
    sql,
    kind: 'embedded',
    // One process owns the embedded database, and its socket serves one session: share the client.
    session: () => sql,
    lost: embedded.lost,
    close: once(async () => {
      await sql.end({ timeout: 5 });
      await embedded.close();
    }),
  };
}

function connect(url: string, max: number, onClose?: () => void): Sql {
  return postgres(url, {
    max,
    onnotice: () => {},
    // Bigint ids come back as strings; sluice passes them through as strings in JSON.
    types: {},
    connection: { application_name: 'sluice' },
    // A server that does not answer is an outage to report, not a 30 s wait per query.
    connect_timeout: CONNECT_TIMEOUT_S,
    // The library's default backoff grows to 20 s after a few failed connects: an outage would
    // outlast itself by that much. Seconds, doubling, capped at 1 s, half of it random.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2),
    ...(onClose === undefined ? {} : { onclose: onClose, idle_timeout: 0, max_lifetime: 0 }),
  });
}

const CONNECT_TIMEOUT_S = 5;

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
