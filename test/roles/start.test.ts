import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

interface Readyz {
  status: string;
  components: Record<string, { ok: boolean; required: boolean; detail?: string }>;
}

/** An `ingest` node on a Postgres cluster of its own, which the test stops. */
describe('readiness of an ingest node', () => {
  let cluster: PgCluster;
  let dir: string;
  let sluice: SpawnedSluice;
  const readyz = async (): Promise<{ status: number; body: Readyz }> => {
    const res = await fetch(`${sluice.url}/readyz`);
    return { status: res.status, body: (await res.json()) as Readyz };
  };

  beforeAll(async () => {
    cluster = await startPgCluster();
    dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
    sluice = await spawnSluice({ DATABASE_URL: cluster.url, SLUICE_PORT: '0', SLUICE_JOURNAL_DIR: join(dir, 'journal'), SLUICE_NODE_ID: 'edge-1' }, 'ingest');
  }, 120_000);

  afterAll(async () => {
    sluice?.proc.kill('SIGKILL');
    await sluice?.proc.exited;
    await cluster?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('reports kafka as not required: an ingest node leaves publishing to `sluice process`', async () => {
    const { status, body } = await readyz();
    expect(status).toBe(200);
    expect(body.components.kafka).toEqual({ ok: true, required: false, detail: 'not used by an ingest node: `sluice process` instances publish its writes' });
    expect(body.components.outbox).toEqual({ ok: true, required: true });
  });

  test('with the database down, the outbox entry names DATABASE_URL, the cause and the fix', async () => {
    await cluster.stop('fast');
    const expected = {
      ok: false,
      required: true,
      detail: `DATABASE_URL ${cluster.url}: connection refused (nothing listens there): start Postgres there, or fix the host and port in DATABASE_URL`,
    };
    let last: { status: number; body: Readyz } | undefined;
    // The first check after the stop may still see the cut session; the next connects and is refused.
    await eventually(async () => {
      last = await readyz();
      return Bun.deepEquals(last.body.components.outbox, expected);
    }, 15_000, `the outbox entry to name DATABASE_URL (last: ${JSON.stringify(last?.body.components.outbox)})`).catch(() => {});
    expect(last?.status).toBe(503);
    expect(last?.body.components.outbox).toEqual(expected);
  }, 30_000);
});
