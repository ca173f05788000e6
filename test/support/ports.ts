import { createServer, type Server, type Socket } from 'node:net';

/**
 * A port where something accepts connections and never says a word: a blackholed service.
 * `received` counts the bytes sent to it, so a test can tell that a request is waiting for its answer.
 */
export async function silentPort(): Promise<{ port: number; received(): number; close(): void }> {
  const sockets: Socket[] = [];
  let received = 0;
  const server: Server = createServer((s) => {
    sockets.push(s);
    s.on('data', (d: Buffer) => {
      received += d.length;
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    received: () => received,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** A port nothing listens on (bound once, then released): connections to it are refused. */
export async function freePort(): Promise<number> {
  const s = await silentPort();
  s.close();
  return s.port;
}
