import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { acquirePidLock } from '../pid-lock.ts';

/**
 * The embedded server's shared_buffers. PGlite's default, Postgres's 128MB, is touched in full when
 * the server starts (its WebAssembly memory never shrinks), so it was most of the embedded default's
 * peak RSS before a single write: reopening a database cost 258 MiB of RSS in a bare process with
 * 128MB, 151 MiB with 16MB (first start, initdb included: 983 -> 814 MiB). The pages it no longer
 * caches are the kernel's page cache's (PGlite's files are real files), and the embedded database is
 * the single-process default, not the production outbox (DATABASE_URL is).
 */
export const EMBEDDED_SHARED_BUFFERS = '16MB';

export interface EmbeddedPostgres {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * PGlite in `<dataDir>/pglite`, served on 127.0.0.1 (random port). PGlite has no lock of its own and
 * two processes on one directory silently lose writes, so a pid lock file guards the directory.
 */
export async function startEmbeddedPostgres(dataDir: string, log: Logger): Promise<EmbeddedPostgres> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireLock(join(dataDir, 'sluice.lock'));
  try {
    const started = Date.now();
    const db = await PGlite.create({ dataDir: join(dataDir, 'pglite'), postgresqlconf: [`shared_buffers = ${EMBEDDED_SHARED_BUFFERS}`] });
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
    await server.start();
    const url = `postgres://postgres@${server.getServerConn()}/postgres?sslmode=disable`;
    log.info('embedded postgres ready', { data_dir: dataDir, ms: Date.now() - started });
    return {
      url,
      close: async () => {
        await server.stop();
        await db.close();
        releaseLock();
      },
    };
  } catch (err) {
    releaseLock();
    throw err;
  }
}

function acquireLock(path: string): () => void {
  return acquirePidLock(path, (holder) => new SluiceError('outbox_unavailable', `embedded database ${path} is in use by process ${holder}; stop it or set DATABASE_URL`));
}
