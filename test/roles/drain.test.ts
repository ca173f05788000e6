import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startRole } from '../../src/roles/start.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

describe('shutdown with a request still arriving', () => {
  let db: TestDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-drain-'));
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('regression (issue 15): /readyz answers 503 draining while the request is answered, then the node stops', async () => {
    const config = loadConfig({ DATABASE_URL: db.url, SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: dir, SLUICE_NODE_ID: 'drain' });
    const running = await startRole('ingest', config, quietLog);
    const { port } = new URL(running.url);
    const body = JSON.stringify({ dedupe_key: 'slow', payload: { a: 1 } });
    const half = Math.floor(body.length / 2);
    let answer = '';
    const socket: Socket = connect(Number(port), '127.0.0.1');
    socket.on('data', (d) => (answer += d.toString()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: acme\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, half)}`);
    // The handler runs once the headers are in: the request is in flight before shutdown begins.
    await eventually(async () => (await fetch(`${running.url}/metrics`)).ok, 5_000, 'node answering');
    const stopped = running.shutdown('test');
    let seen: { status: number; body: unknown } | undefined;
    await eventually(async () => {
      const res = await fetch(`${running.url}/readyz`);
      seen = { status: res.status, body: await res.json() };
      return res.status === 503;
    }, 5_000, '/readyz draining');
    expect(seen?.body).toMatchObject({ status: 'draining' });
    socket.write(body.slice(half));
    await stopped;
    socket.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 202/);
    expect(answer).toContain('"dedupe_key":"slow"');
  }, 60_000);
});
