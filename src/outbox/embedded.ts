import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { acquirePidLock } from '../pid-lock.ts';
import { PURGE_DELAY_VARIABLE } from '../roles/engine-memory.ts';
import type { FromEmbedded, ToEmbedded } from './embedded-server.ts';

/**
 * The embedded server's shared_buffers. PGlite's default, Postgres's 128MB, is touched in full when
 * the server starts (its WebAssembly memory never shrinks), so it was most of the embedded default's
 * peak RSS before a single write: reopening a database cost 258 MiB of RSS in a bare process with
 * 128MB, 151 MiB with 16MB (first start, initdb included: 983 -> 814 MiB). The pages it no longer
 * caches are the kernel's page cache's (PGlite's files are real files), and the embedded database is
 * the single-process default, not the production outbox (DATABASE_URL is).
 */
export const EMBEDDED_SHARED_BUFFERS = '16MB';

/** mimalloc's own default: freed memory goes back to the system 100 ms later. */
export const EMBEDDED_PURGE_DELAY = '100';

export interface EmbeddedPostgres {
  readonly url: string;
  /** Settles with a reason if the database's process exits before close(): sluice cannot go on without it. */
  readonly lost: Promise<string>;
  close(): Promise<void>;
}

const SERVER = join(import.meta.dir, 'embedded-server.ts');

/** How long close() waits for the database's process to shut PGlite down before killing it (its WAL recovers). */
const STOP_TIMEOUT_MS = 15_000;

/**
 * PGlite in `<dataDir>/pglite`, served on 127.0.0.1 (random port) by a process of its own
 * (embedded-server.ts). In sluice's process its WebAssembly memory (128 MiB, touched as Postgres
 * works) and the Bun runtime it needs came on top of sluice's own: a `serve` under load peaked at
 * 444–555 MiB. Apart, each process has its own and sluice's thread does none of Postgres's work.
 * PGlite has no lock of its own and two processes on one directory silently lose writes, so a pid
 * lock file (this process's) guards the directory, and the database's process holds one of its own
 * while it has the files open.
 */
export async function startEmbeddedPostgres(dataDir: string, log: Logger): Promise<EmbeddedPostgres> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireLock(join(dataDir, 'sluice.lock'));
  const started = Date.now();
  let answered: (message: FromEmbedded) => void = () => {};
  const answer = new Promise<FromEmbedded>((resolve) => {
    answered = resolve;
  });
  const child = Bun.spawn({
    cmd: [process.execPath, SERVER, dataDir, EMBEDDED_SHARED_BUFFERS],
    // The allocator's default purge, not the -1 sluice's own start sets (src/roles/engine-memory.ts):
    // kept, PGlite's freed memory raised the database process's peak from 220 to 249 MiB in the bench.
    env: { ...process.env, [PURGE_DELAY_VARIABLE]: EMBEDDED_PURGE_DELAY },
    stdin: 'ignore',
    stdout: 'inherit',
    stderr: 'inherit',
    ipc: (message: FromEmbedded) => answered(message),
  });
  let closing = false;
  const exited = child.exited.then((code) => `the embedded database's process (pid ${child.pid}) exited ${child.signalCode ?? `with code ${code}`}`);
  const first = await Promise.race([answer, exited]);
  if (typeof first === 'string' || first.t === 'failed') {
    child.kill('SIGKILL');
    await child.exited;
    releaseLock();
    const why = typeof first === 'string' ? `${first} before it was ready` : first.message;
    throw new SluiceError('outbox_unavailable', `the embedded database did not start: ${why}`);
  }
  const url = `postgres://postgres@${first.conn}/postgres?sslmode=disable`;
  log.info('embedded postgres ready', { data_dir: dataDir, pid: child.pid, ms: Date.now() - started });
  return {
    url,
    lost: exited.then((reason) => (closing ? new Promise<string>(() => {}) : reason)),
    close: async () => {
      closing = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.send({ t: 'stop' } satisfies ToEmbedded);
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await child.exited;
        clearTimeout(timer);
      }
      releaseLock();
    },
  };
}

function acquireLock(path: string): () => void {
  return acquirePidLock(path, (holder) => new SluiceError('outbox_unavailable', `embedded database ${path} is in use by process ${holder}; stop it or set DATABASE_URL`));
}
