import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { eventually, postEvent } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';

const OLD = newToken('old');
const NEW = newToken('new');

describe('SIGHUP reloads the tenants file of a running sluice', () => {
  let db: TestDatabase;
  let dir: string;
  let file: string;
  let sluice: SpawnedSluice;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    dir = mkdtempSync(join(tmpdir(), 'sluice-sighup-'));
    file = join(dir, 'tenants.json');
    writeTenantsFile(file, { acme: { tokens: [OLD] } });
    sluice = await spawnSluice({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: (await testBrokers()).join(','),
      SLUICE_PORT: '0',
      SLUICE_TENANTS_FILE: file,
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'sighup-node',
      SLUICE_KAFKA_TOPIC: `sighup.${Bun.randomUUIDv7()}`,
      // The node of a production setup: ingest and its processor in processes of their own, both reloading.
      SLUICE_PROCESSOR: 'process',
    });
  }, 60_000);

  afterAll(async () => {
    sluice?.proc.kill('SIGTERM');
    await sluice?.proc.exited;
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  let accepted = 0;
  /** One write with a fresh key: accepted (2xx) as which tenant, or refused with which status. */
  async function write(token: string): Promise<{ tenant: string } | { refused: number }> {
    const res = await postEvent(sluice.url, { dedupe_key: `k${++n}`, payload: { n } }, { Authorization: `Bearer ${token}` });
    const body = (await res.json()) as { tenant_id?: string };
    if (!res.ok || body.tenant_id === undefined) return { refused: res.status };
    accepted++;
    return { tenant: body.tenant_id };
  }

  const logged = (msg: string) => sluice.logLines().filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);

  test('a valid file adds a token at once; an invalid one is logged and the tokens in force stay', async () => {
    expect(await write(OLD)).toEqual({ tenant: 'acme' });
    expect(await write(NEW)).toEqual({ refused: 401 });

    writeTenantsFile(file, { acme: { tokens: [OLD] }, beta: { tokens: [NEW] } });
    sluice.proc.kill('SIGHUP');
    await eventually(async () => 'tenant' in (await write(NEW)), 10_000, 'the new token accepted');
    expect(await write(NEW)).toEqual({ tenant: 'beta' });
    // Each of the node's processes reloads once: the ingest worker and the processor.
    await eventually(async () => logged('tenants file reloaded').length === 2, 10_000, 'both processes reloaded');
    expect(logged('tenants file reloaded').sort((a, b) => String(a.worker).localeCompare(String(b.worker)))).toEqual([
      expect.objectContaining({ level: 'info', file, tenants: 2, worker: 1 }),
      expect.objectContaining({ level: 'info', file, tenants: 2, worker: 'processor' }),
    ]);

    // A plain token pasted in by mistake (acme), a malformed digest and a bad quota (beta).
    writeFileSync(file, JSON.stringify({ tenants: { acme: { tokens: [OLD] }, beta: { tokens: ['sha256:nothex'], quota: { rate: -1 } } } }));
    sluice.proc.kill('SIGHUP');
    await eventually(async () => logged('tenants file rejected; keeping the previous one').length === 2, 10_000, 'the rejection logged by both');
    const rejections = logged('tenants file rejected; keeping the previous one');
    expect(rejections.map((r) => String(r.worker)).sort()).toEqual(['1', 'processor']);
    const [rejected] = rejections;
    expect(rejected).toMatchObject({ level: 'error', file });
    expect(rejections[1]?.errors).toEqual(rejected?.errors);
    expect(rejected?.errors).toEqual([
      expect.stringContaining('tenants.acme.tokens.0 must be sha256:<64 lowercase hex digits>'),
      expect.stringContaining('tenants.beta.tokens.0 must be sha256:<64 lowercase hex digits>'),
      expect.stringContaining('tenants.beta.quota.rate must be greater than 0'),
    ]);
    expect(await write(OLD)).toEqual({ tenant: 'acme' });
    expect(await write(NEW)).toEqual({ tenant: 'beta' });

    const all = sluice.logLines().join('\n');
    for (const token of [OLD, NEW]) expect(all).not.toContain(token);
    const [rows] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
    expect(rows?.n).toBe(accepted);
  }, 60_000);
});

describe('SIGHUP in open mode without TLS', () => {
  test('is answered with one info line saying there is nothing to reload; the node keeps serving', async () => {
    const db = await createTestDatabase({ migrate: false });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-sighup-open-'));
    const node = await spawnSluice({
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_TENANTS_FILE: undefined,
      SLUICE_TLS_CERT_FILE: undefined,
      SLUICE_TLS_KEY_FILE: undefined,
      SLUICE_JOURNAL_DIR: join(dir, 'journal'),
      SLUICE_NODE_ID: 'sighup-open',
      // Supervised: the worker must not say it a second time.
      SLUICE_WORKERS: '2',
    }, 'ingest');
    try {
      node.proc.kill('SIGHUP');
      const ignored = () => node.logLines().filter((l) => l.includes('"msg":"SIGHUP ignored: nothing to reload'));
      await eventually(async () => ignored().length > 0, 10_000, 'the SIGHUP answered');
      const line = JSON.parse(ignored()[0] ?? '{}') as Record<string, unknown>;
      expect(line.level).toBe('info');
      expect(String(line.msg)).toContain('no SLUICE_TENANTS_FILE, no SLUICE_TLS_CERT_FILE');
      const res = await postEvent(node.url, { tenant_id: 'acme', dedupe_key: 'after-hup', payload: {} });
      expect(res.status).toBe(202);
      expect(ignored()).toHaveLength(1);
      node.proc.kill('SIGTERM');
      expect(await node.proc.exited).toBe(0);
    } finally {
      node.proc.kill('SIGKILL');
      await node.proc.exited;
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
