import { afterAll, beforeAll, expect, test } from 'bun:test';
import { SluiceError } from '../../src/errors.ts';
import { BodyBudget } from '../../src/http/body-budget.ts';
import { createLogger } from '../../src/log.ts';
import { startTestApp, type TestApp } from '../support/http-app.ts';

let t: TestApp;
let draining = false;
let failure: SluiceError | undefined;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  t = await startTestApp({
    log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }),
    draining: () => draining,
    ingest: {
      write: async () => {
        throw failure ?? new SluiceError('internal', 'no failure set');
      },
      maxBodyBytes: 4096,
      bodyBudget: new BodyBudget(1 << 20),
      maxBatchLines: 100,
      maxJsonDepth: 64,
      maxLineBytes: 4096,
    },
  });
});
afterAll(async () => {
  await t.close();
});

const post = async (i: number): Promise<Response> =>
  t.app.request('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme' }, body: JSON.stringify({ dedupe_key: `k${i}`, payload: {} }) });

test('regression: writes refused while draining log no line each (a SIGTERM under load logged 1,894 warnings in 0.3 s)', async () => {
  draining = true;
  try {
    for (let i = 0; i < 50; i++) expect((await post(i)).status).toBe(503);
  } finally {
    draining = false;
  }
  expect(lines.filter((l) => l.msg === 'ingest failed')).toEqual([]);
});

test('a failure that repeats per request is logged once per code and interval, not once per request', async () => {
  failure = new SluiceError('journal_unavailable', 'the journal disk is full');
  for (let i = 0; i < 50; i++) expect((await post(i)).status).toBe(503);
  failure = new SluiceError('internal', 'a bug');
  expect((await post(99)).status).toBe(500);
  const failed = lines.filter((l) => l.msg === 'ingest failed');
  expect(failed.map((l) => l.code)).toEqual(['journal_unavailable', 'internal']);
  expect(failed[0]).toMatchObject({ level: 'warn', request_id: expect.any(String) });
});
