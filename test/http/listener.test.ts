import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

describe('the HTTP listener', () => {
  let db: TestDatabase;
  let dir: string;
  let sluice: SpawnedSluice;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    dir = mkdtempSync(join(tmpdir(), 'sluice-listener-'));
    sluice = await spawnSluice({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: (await testBrokers()).join(','),
      SLUICE_PORT: '0',
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_TRANSACTIONAL_ID_PREFIX: `listener-${Bun.randomUUIDv7()}`,
    });
  }, 120_000);
  afterAll(async () => {
    sluice?.proc.kill('SIGTERM');
    await sluice?.proc.exited;
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a body that stops arriving has its connection closed within ~8-12 s, without an answer, and the log stays JSON lines', async () => {
    const { hostname, port } = new URL(sluice.url);
    const started = performance.now();
    const outcome = await new Promise<{ received: string; ms: number }>((resolve) => {
      const socket = connect(Number(port), hostname);
      let received = '';
      socket.on('data', (d) => {
        received += d.toString('latin1');
      });
      socket.on('close', () => resolve({ received, ms: performance.now() - started }));
      socket.on('error', () => {});
      socket.write('POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Tenant-Id: acme\r\nContent-Length: 1000\r\n\r\n{"payload":');
    });
    expect(outcome.received).toBe('');
    expect(outcome.ms).toBeGreaterThan(7_000);
    expect(outcome.ms).toBeLessThan(20_000);
    // Bun warned in plain text on stderr for each timed-out request while its timeout was its default.
    await Bun.sleep(200);
    for (const line of sluice.logLines()) expect(() => JSON.parse(line) as unknown).not.toThrow();
  }, 30_000);
});
