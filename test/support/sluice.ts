import { afterAll, beforeAll } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import type { Logger } from '../../src/log.ts';
import { startRole, type Running } from '../../src/roles/start.ts';
import { testBrokers } from './kafka.ts';
import { createTestDatabase, quietLog, type TestDatabase } from './postgres.ts';

export interface TestSluice {
  running: Running;
  url: string;
  topic: string;
  journalDir: string;
  stop(): Promise<void>;
}

/**
 * A whole sluice (`serve`) in this process, on a random port, with its own journal and topic. Logs
 * go to `opts.log` (errors only, discarded, by default).
 */
export async function startSluice(env: Record<string, string>, opts: { log?: Logger } = {}): Promise<TestSluice> {
  const journalDir = mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
  const topic = `test.${Bun.randomUUIDv7()}`;
  const config = loadConfig({
    SLUICE_PORT: '0',
    SLUICE_JOURNAL_DIR: journalDir,
    SLUICE_NODE_ID: 'test-node',
    SLUICE_KAFKA_TOPIC: topic,
    SLUICE_POLL_MS: '20',
    // One prefix per outbox database, as in production: the tests share one broker.
    SLUICE_TRANSACTIONAL_ID_PREFIX: `test-${Bun.randomUUIDv7()}`,
    ...env,
  });
  const running = await startRole('serve', config, opts.log ?? quietLog);
  return {
    running,
    url: running.url,
    topic,
    journalDir,
    async stop() {
      await running.shutdown('test');
      rmSync(journalDir, { recursive: true, force: true });
    },
  };
}

export async function postEvent(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/**
 * Polls `check` until it returns true or `timeoutMs` passes (monotonic time: a test that holds the
 * wall clock with setSystemTime still times out).
 */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export interface SluiceFixture {
  db: TestDatabase;
  brokers: string[];
  sluice: TestSluice;
}

/**
 * A database of its own, the test brokers and a whole sluice on them for the enclosing describe
 * block: started before its tests, stopped and dropped after. The fields are set once it started.
 */
export function sluiceFixture(env: Record<string, string> = {}): SluiceFixture {
  const fixture = {} as SluiceFixture;
  beforeAll(async () => {
    fixture.db = await createTestDatabase({ migrate: false });
    fixture.brokers = await testBrokers();
    fixture.sluice = await startSluice({ DATABASE_URL: fixture.db.url, KAFKA_BROKERS: fixture.brokers.join(','), ...env });
  }, 120_000);
  afterAll(async () => {
    await fixture.sluice?.stop();
    await fixture.db?.drop();
  });
  return fixture;
}
