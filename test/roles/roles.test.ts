import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startRole, type Role, type Running } from '../../src/roles/start.ts';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, quietLog, type TestDatabase } from '../support/postgres.ts';
import { postEvent } from '../support/sluice.ts';

const ADMIN = 'admin-token-for-the-roles-test';

/** Every role is built by one composition root on one app: the same ops routes, error table and admin API. */
describe('serve, ingest and process from one composition root', () => {
  let db: TestDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-roles-'));
  const running = new Map<Role, Running>();

  beforeAll(async () => {
    db = await createTestDatabase();
    const brokers = await testBrokers();
    for (const role of ['serve', 'ingest', 'process'] as const) {
      const config = loadConfig({
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_PORT: '0',
        SLUICE_JOURNAL_DIR: join(dir, role),
        SLUICE_NODE_ID: role,
        SLUICE_ADMIN_TOKEN: ADMIN,
        SLUICE_KAFKA_TOPIC: `roles.${Bun.randomUUIDv7()}`,
        SLUICE_TRANSACTIONAL_ID_PREFIX: `roles-${Bun.randomUUIDv7()}`,
      });
      running.set(role, await startRole(role, config, quietLog));
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...running.values()].map((r) => r.shutdown('test')));
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (role: Role): string => running.get(role)?.url ?? '';

  test('an unknown route is the error table\'s 404 in every role', async () => {
    for (const role of running.keys()) {
      const res = await fetch(`${url(role)}/nope`);
      expect([role, res.status]).toEqual([role, 404]);
      expect(await res.json()).toEqual({ error: { code: 'not_found', message: 'no route for GET /nope' } });
    }
  });

  test('ingest routes exist where a role ingests: process answers POST /v1/events with the 404 of the table', async () => {
    const tenant = { 'X-Tenant-Id': 'acme' };
    expect((await postEvent(url('serve'), { dedupe_key: 'a', payload: {} }, tenant)).status).toBe(202);
    expect((await postEvent(url('ingest'), { dedupe_key: 'b', payload: {} }, tenant)).status).toBe(202);
    const refused = await postEvent(url('process'), { dedupe_key: 'c', payload: {} }, tenant);
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  test('/healthz, /readyz and /metrics answer in every role; readiness names what the role needs', async () => {
    const required: Record<string, Record<string, boolean>> = {};
    for (const role of running.keys()) {
      expect((await fetch(`${url(role)}/healthz`)).status).toBe(200);
      const ready = (await (await fetch(`${url(role)}/readyz`)).json()) as { components: Record<string, { required: boolean }> };
      required[role] = Object.fromEntries(Object.entries(ready.components).map(([name, c]) => [name, c.required]));
      const metrics = await (await fetch(`${url(role)}/metrics`)).text();
      expect(metrics).toContain('sluice_build_info{');
    }
    expect(required.process).toEqual({ outbox: true, kafka: true });
    expect(required.ingest).toMatchObject({ journal: true, outbox: true, kafka: false });
    expect(required.serve).toMatchObject({ journal: true, outbox: true, kafka: false });
  });

  test('the admin API is the same in every role, behind the same token', async () => {
    for (const role of running.keys()) {
      const anonymous = await fetch(`${url(role)}/admin/tenants`);
      expect([role, anonymous.status]).toEqual([role, 401]);
      const listed = await fetch(`${url(role)}/admin/tenants`, { headers: { Authorization: `Bearer ${ADMIN}` } });
      expect([role, listed.status]).toEqual([role, 200]);
      const tenants = ((await listed.json()) as { tenants: { tenant_id: string }[] }).tenants.map((t) => t.tenant_id);
      expect(tenants).toContain('acme');
    }
  });
});
