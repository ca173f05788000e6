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

/**
 * A free loopback port below the kernel's ephemeral range (32768 and up here), for a server a test
 * stops and starts again on the same port. A port from listen(0) is in that range: while its server
 * is down, a client reconnecting in a loop may be given that very port as its local port and connect
 * to itself (TCP simultaneous open; 564 refused attempts on this machine), holding the port so the
 * server cannot bind it again. Likely the CI failure of "the pool answers again after..." (2 s in,
 * at a restart; 1 run of many).
 */
export async function restartablePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  throw new Error('no free port between 20000 and 32000 after 200 tries');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
