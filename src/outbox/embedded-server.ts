/**
 * The embedded database's own process (src/outbox/embedded.ts starts it): PGlite on `<dir>`, served on
 * a loopback socket to the sluice that started it, over whose IPC channel it says where, or why it
 * could not. It lives as long as that channel: when sluice exits, however it exits, this process ends
 * at once, as PGlite ended with sluice when it ran inside it (its WAL makes that a crash it recovers
 * from), so no process is left holding the database files.
 */
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { describeError, SluiceError } from '../errors.ts';
import { acquirePidLock } from '../pid-lock.ts';

export type FromEmbedded = { t: 'ready'; conn: string } | { t: 'failed'; message: string };
export type ToEmbedded = { t: 'stop' };

/** Held by this process while it has the files open: a start that finds it held waits for no orphan. */
const EMBEDDED_PROCESS_LOCK = 'pglite.lock';

async function main(dir: string, sharedBuffers: string): Promise<void> {
  process.once('disconnect', () => process.exit(1));
  const release = acquirePidLock(
    join(dir, EMBEDDED_PROCESS_LOCK),
    (holder) => new SluiceError('outbox_unavailable', `the embedded database ${dir} is still open in process ${holder}; wait for it to exit`),
  );
  const db = await PGlite.create({ dataDir: join(dir, 'pglite'), postgresqlconf: [`shared_buffers = ${sharedBuffers}`] });
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  process.on('message', (message: ToEmbedded) => {
    if (message.t !== 'stop') return;
    void (async () => {
      await server.stop();
      await db.close();
      release();
      process.exit(0);
    })();
  });
  process.send?.({ t: 'ready', conn: server.getServerConn() } satisfies FromEmbedded);
}

const [dir, sharedBuffers] = process.argv.slice(2);
if (dir === undefined || sharedBuffers === undefined) throw new Error('usage: embedded-server.ts <data dir> <shared_buffers>');
main(dir, sharedBuffers).catch((err: unknown) => {
  process.exitCode = 1;
  // Disconnecting once the message is out ends this process (above) without cutting the message off.
  process.send?.({ t: 'failed', message: err instanceof SluiceError ? err.message : describeError(err) } satisfies FromEmbedded, undefined, undefined, () => process.disconnect?.());
});
