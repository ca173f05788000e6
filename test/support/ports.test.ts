import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { restartablePort } from './ports.ts';

test('a restartable port is never one the kernel hands out as a local port, so no client can connect to itself on it', async () => {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const ports = await Promise.all(Array.from({ length: 50 }, () => restartablePort()));
  for (const port of ports) expect(port).toBeLessThan(low ?? 32_768);
  // While nothing listens there, a reconnecting client is refused every time (a port of the
  // ephemeral range connected to itself after 564 attempts on this machine).
  const port = ports[0] ?? 0;
  for (let i = 0; i < 1_000; i++) {
    const outcome = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        resolve(`connected from local port ${s.localPort}`);
        s.destroy();
      });
      s.once('error', () => resolve('refused'));
    });
    expect(outcome).toBe('refused');
  }
});
