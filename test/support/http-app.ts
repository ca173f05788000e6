import { expect } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type AppDeps } from '../../src/http/app.ts';
import { BodyBudget } from '../../src/http/body-budget.ts';
import { Readiness } from '../../src/http/readiness.ts';
import { OutboxProgress } from '../../src/ingest/outbox-progress.ts';
import { SyncWrites } from '../../src/ingest/sync-writes.ts';
import { JournalWriter } from '../../src/journal/writer.ts';
import { createMetrics } from '../../src/metrics.ts';
import { NO_TENANTS_FILE, Tenants } from '../../src/tenants.ts';
import { createTestDatabase, quietLog, type TestDatabase } from './postgres.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { nodeJournalLines } from './journal-files.ts';

export interface TestApp {
  app: ReturnType<typeof createApp>;
  db: TestDatabase;
  journalDir: string;
  /** Every line of the journal's plain segments, parsed. */
  journalLines(): Record<string, unknown>[];
  outboxCount(): Promise<number>;
  close(): Promise<void>;
}

/** Parts of the app a test replaces, and the ingest route's body limit. */
type TestAppParts = Partial<AppDeps> & { maxBodyBytes?: number };

/**
 * The HTTP layer over a real sync write path (journal + outbox in a database of its own), served
 * with `app.request` and no socket. `overrides` replaces any of the app's parts; as a function it is
 * given the database, for parts that need it (the admin API).
 */
export async function startTestApp(
  overrides: TestAppParts | ((db: TestDatabase) => TestAppParts) = {},
): Promise<TestApp> {
  const db = await createTestDatabase();
  const deps = typeof overrides === 'function' ? overrides(db) : overrides;
  const journalDir = mkdtempSync(join(tmpdir(), 'sluice-http-'));
  const metrics = deps.metrics ?? createMetrics();
  const log = deps.log ?? quietLog;
  const journal = await JournalWriter.open({ dir: journalDir, nodeId: 'n1', segmentBytes: 1 << 20, log, metrics });
  const writePath = new SyncWrites({
    nodeId: 'n1',
    journal,
    progress: new OutboxProgress(journal),
    outbox: new Outbox(db.sql, 16),
    maxBatch: 1000,
    outboxWaitMs: 2_000,
    log,
  });
  const app = createApp({
    log,
    metrics,
    ingest: {
      write: (e) => writePath.write(e),
      maxBodyBytes: deps.maxBodyBytes ?? 4096,
      bodyBudget: new BodyBudget(1 << 20, metrics.ingestBodyBytes),
      maxBatchLines: 100,
      maxJsonDepth: 64,
      maxLineBytes: 4096,
    },
    defaultTopic: 'sluice.events',
    progressTopic: 'sluice.progress',
    tenants: new Tenants(NO_TENANTS_FILE, log),
    draining: () => false,
    readiness: new Readiness().add('journal', true, () => ({ ok: true })),
    ...deps,
  });
  return {
    app,
    db,
    journalDir,
    journalLines() {
      return nodeJournalLines(join(journalDir, 'n1')).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async outboxCount() {
      const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
      return r?.n ?? -1;
    },
    async close() {
      await journal.close();
      await db.drop();
      rmSync(journalDir, { recursive: true, force: true });
    },
  };
}

export interface RejectedBody {
  message: string;
  details?: unknown[];
  headers: Headers;
}

/**
 * Runs a request that must be rejected: checks its status and error code, the JSON error shape, and
 * that neither the outbox nor the journal grew.
 */
export async function expectRejected(t: TestApp, res: Promise<Response>, status: number, code: string): Promise<RejectedBody> {
  const rowsBefore = await t.outboxCount();
  const linesBefore = t.journalLines().length;
  const response = await res;
  const body = (await response.json()) as { error: { code: string; message: string; details?: unknown[] } };
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/json');
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(await t.outboxCount()).toBe(rowsBefore);
  expect(t.journalLines().length).toBe(linesBefore);
  return { ...body.error, headers: response.headers };
}
