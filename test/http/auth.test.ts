import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { TenantControls } from '../../src/processor/tenant-controls.ts';
import { Outbox } from '../../src/outbox/outbox.ts';
import { loadTenantsFile, Tenants } from '../../src/tenants.ts';
import { expectRejected, startTestApp, type TestApp } from '../support/http-app.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';

const ACME = newToken('acme');
const BETA = newToken('beta');
const ADMIN = newToken('admin');
const TOKENS = [ACME, BETA, ADMIN];

const dir = mkdtempSync(join(tmpdir(), 'sluice-auth-'));
const logLines: string[] = [];
const log = createLogger({ level: 'debug', write: (line) => logLines.push(line) });
const metrics = createMetrics();
let controls: TenantControls;
let t: TestApp;
let open: TestApp;

beforeAll(async () => {
  const file = join(dir, 'tenants.json');
  writeTenantsFile(file, { acme: { tokens: [ACME], topic: 'acme.events' }, beta: { tokens: [BETA] } });
  const tenants = new Tenants(loadTenantsFile(file), log);
  controls = new TenantControls(tenants, metrics, log);
  t = await startTestApp((db) => ({
    log,
    metrics,
    tenants,
    admin: { token: ADMIN, outbox: new Outbox(db.sql, 16), controls: async (ids, reset) => controls.snapshots(ids, reset), wake: () => {} },
  }));
  // Open mode (no tenants file) and no SLUICE_ADMIN_TOKEN.
  open = await startTestApp({ log });
});

afterAll(async () => {
  await t.close();
  await open.close();
  rmSync(dir, { recursive: true, force: true });
});

function ingest(app: TestApp, body: string, headers: Record<string, string>): Promise<Response> {
  return Promise.resolve(
    app.app.request('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body }),
  );
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const event = (extra: Record<string, unknown> = {}) => JSON.stringify({ payload: { n: 1 }, ...extra });

describe('ingest with a tenants file', () => {
  test('the token names the tenant; its topic is the default; claims that agree are fine', async () => {
    const res = await ingest(t, event({ dedupe_key: 'a-1' }), bearer(ACME));
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ tenant_id: 'acme', dedupe_key: 'a-1', duplicate: false });
    const agreeing = await ingest(t, event({ dedupe_key: 'a-2', tenant_id: 'acme', namespace: 'acme:orders' }), {
      ...bearer(ACME),
      'X-Tenant-Id': 'acme',
      'X-Soma-Tenant': 'acme',
    });
    expect(agreeing.status).toBe(202);
    const own = await ingest(t, event({ dedupe_key: 'a-3', topic: 'acme.audit' }), bearer(ACME));
    expect(own.status).toBe(202);
    const beta = await ingest(t, event({ dedupe_key: 'b-1' }), bearer(BETA));
    expect(await beta.json()).toMatchObject({ tenant_id: 'beta' });
    const topics = Object.fromEntries(t.journalLines().map((l) => [l.dedupe_key, [l.tenant_id, l.topic]]));
    expect(topics).toEqual({
      'a-1': ['acme', 'acme.events'],
      'a-2': ['acme', 'acme.events'],
      'a-3': ['acme', 'acme.audit'],
      'b-1': ['beta', 'sluice.events'],
    });
    const rows = await t.db.sql`SELECT tenant_id, topic FROM outbox WHERE dedupe_key = 'a-1'`;
    expect([...rows]).toEqual([{ tenant_id: 'acme', topic: 'acme.events' }]);
  });

  test('401 unauthorized with WWW-Authenticate for a missing, malformed, unknown or admin token', async () => {
    const cases: Record<string, string>[] = [
      { 'X-Tenant-Id': 'acme' },
      { Authorization: ACME },
      { Authorization: `Basic ${btoa(`acme:${ACME}`)}` },
      { Authorization: 'Bearer ' },
      bearer(`${ACME}x`),
      bearer(ADMIN),
    ];
    for (const headers of cases) {
      const err = await expectRejected(t, ingest(t, event({ tenant_id: 'acme' }), headers), 401, 'unauthorized');
      expect(err.headers.get('WWW-Authenticate')).toBe('Bearer');
    }
  });

  test('403 forbidden when a header or body claims another tenant than the token', async () => {
    const cases: [Record<string, string>, Record<string, unknown>, string][] = [
      [{ 'X-Tenant-Id': 'beta' }, {}, 'header X-Tenant-Id says "beta"'],
      [{ 'X-Soma-Tenant': 'beta' }, {}, 'header X-Soma-Tenant says "beta"'],
      [{}, { tenant_id: 'beta' }, 'body tenant_id says "beta"'],
      [{}, { namespace: 'beta:orders' }, 'body namespace says "beta"'],
      [{ 'X-Tenant-Id': 'acme' }, { tenant_id: 'nobody' }, 'body tenant_id says "nobody"'],
    ];
    for (const [headers, extra, says] of cases) {
      const err = await expectRejected(t, ingest(t, event(extra), { ...bearer(ACME), ...headers }), 403, 'forbidden');
      const messages = [err.message, ...((err.details ?? []) as { message: string }[]).map((d) => d.message)];
      expect(messages.join('\n')).toContain(says);
    }
  });

  test('403 forbidden when an event names the topic the tenants file gives another tenant', async () => {
    const before = t.journalLines().length;
    const err = await expectRejected(t, ingest(t, event({ topic: 'acme.events' }), bearer(BETA)), 403, 'forbidden');
    expect(err.details).toEqual([{ path: 'topic', message: 'topic acme.events belongs to tenant acme' }]);
    expect(t.journalLines().length).toBe(before);
    expect((await ingest(t, event({ dedupe_key: 'a-own', topic: 'acme.events' }), bearer(ACME))).status).toBe(202);
  });

  test('403 for an NDJSON batch with one line of another tenant: nothing written, the line named', async () => {
    const lines = [event({ dedupe_key: 'n-1' }), event({ dedupe_key: 'n-2', tenant_id: 'beta' }), '{broken', event({ dedupe_key: 'n-4' })];
    const err = await expectRejected(
      t,
      ingest(t, lines.join('\n'), { ...bearer(ACME), 'Content-Type': 'application/x-ndjson' }),
      403,
      'forbidden',
    );
    expect(err.details).toEqual([{ line: 2, path: 'tenant_id', message: expect.stringContaining('body tenant_id says "beta"') }]);
  });

  test('431 header_too_large for an over-long Authorization, X-Idempotency-Key, X-Request-ID or X-Tenant-Id', async () => {
    const cases: [string, string][] = [
      ['Authorization', `Bearer ${'x'.repeat(3000)}`],
      ['X-Idempotency-Key', 'k'.repeat(257)],
      ['X-Request-ID', 'r'.repeat(257)],
      ['X-Tenant-Id', 'a'.repeat(129)],
    ];
    for (const [name, value] of cases) {
      const err = await expectRejected(t, ingest(t, event(), { ...bearer(ACME), [name]: value }), 431, 'header_too_large');
      expect(err.details).toEqual([{ path: name.toLowerCase(), message: expect.stringContaining('must be at most') }]);
    }
  });
});

describe('ingest in open mode', () => {
  test('claims decide the tenant and a bearer token is not needed', async () => {
    const res = await ingest(open, event({ dedupe_key: 'o-1' }), { 'X-Tenant-Id': 'acme' });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ tenant_id: 'acme' });
    await expectRejected(open, ingest(open, event(), {}), 400, 'validation_failed');
  });

  test('without SLUICE_ADMIN_TOKEN every /admin path is 404', async () => {
    for (const [method, path] of [
      ['GET', '/admin/tenants'],
      ['POST', '/admin/outbox/replay'],
      ['POST', '/admin/tenants/acme/breaker/reset'],
      ['GET', '/admin/anything'],
    ] as const) {
      const res = await open.app.request(path, { method, headers: bearer(ADMIN) });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
  });
});

describe('admin API at the HTTP layer', () => {
  function admin(path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    return Promise.resolve(
      t.app.request(`/admin${path}`, {
        method: init.method ?? 'POST',
        headers: { 'Content-Type': 'application/json', ...bearer(ADMIN), ...init.headers },
        ...(init.body === undefined ? {} : { body: init.body }),
      }),
    );
  }

  test('401 for no token, a tenant token or a wrong token; the admin token is let in', async () => {
    for (const headers of [{ Authorization: '' }, bearer(ACME), bearer(`${ADMIN}x`), bearer(ADMIN.slice(0, -1))]) {
      const res = await admin('/tenants', { method: 'GET', headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('WWW-Authenticate')).toBe('Bearer');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    const ok = await admin('/tenants', { method: 'GET' });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { tenants: { tenant_id: string }[] };
    expect(body.tenants.map((x) => x.tenant_id)).toEqual(['acme', 'beta']);
  });

  test('admin bodies are validated: 415, 400 invalid_json, 400 validation_failed with paths', async () => {
    const cases: [string, { body: string; headers?: Record<string, string> }, number, string, string[]][] = [
      ['/outbox/replay', { body: '{"ids":[1]}', headers: { 'Content-Type': 'text/plain' } }, 415, 'unsupported_media_type', []],
      ['/outbox/replay', { body: '{"ids":' }, 400, 'invalid_json', []],
      ['/outbox/replay', { body: '{"ids":[1],"tenant":"x"}' }, 400, 'validation_failed', ['(root)']],
      ['/outbox/replay', { body: '{"ids":[]}' }, 400, 'validation_failed', ['ids']],
      [
        '/outbox/replay',
        { body: JSON.stringify({ ids: ['12', 3, 'abc', -1, 1.5, '0', '99999999999999999999', '9223372036854775808', null] }) },
        400,
        'validation_failed',
        ['ids.2', 'ids.3', 'ids.4', 'ids.5', 'ids.6', 'ids.7', 'ids.8'],
      ],
      ['/outbox/replay', { body: JSON.stringify({ ids: Array.from({ length: 10_001 }, (_, i) => i + 1) }) }, 400, 'validation_failed', ['ids']],
      // Outside tester: 9007199254740993 as a JSON number reaches the server as ...992, another id.
      ['/outbox/replay', { body: '{"ids":[9007199254740993, 9007199254740991, "9007199254740993"]}' }, 400, 'validation_failed', ['ids.0']],
      ['/outbox/replay/tenant', { body: '{}' }, 400, 'validation_failed', ['tenant_id']],
      [
        '/outbox/replay/tenant',
        { body: JSON.stringify({ tenant_id: 'a b', since: 'yesterday', status: ['lost'], limit: 0, dry_run: 'yes' }) },
        400,
        'validation_failed',
        ['dry_run', 'limit', 'since', 'status.0', 'tenant_id'],
      ],
      ['/outbox/replay/tenant', { body: JSON.stringify({ tenant_id: 'x'.repeat(200), limit: 100_001 }) }, 400, 'validation_failed', ['limit', 'tenant_id']],
      [
        '/outbox/replay/tenant',
        { body: JSON.stringify({ tenant_id: 'acme', since: '2026-11-02T00:00:00Z', until: '2026-11-01T00:00:00Z' }) },
        400,
        'validation_failed',
        ['until'],
      ],
      ['/tenants/bad%20id/breaker/reset', { body: '' }, 400, 'validation_failed', ['id']],
    ];
    for (const [path, init, status, code, paths] of cases) {
      const res = await admin(path, init);
      const body = (await res.json()) as { error: { code: string; details?: { path: string }[] } };
      expect([path, res.status, body.error.code]).toEqual([path, status, code]);
      if (paths.length > 0) expect([...new Set(body.error.details?.map((d) => d.path))].sort()).toEqual(paths);
    }
  });

  test('413 for an admin body over its limit, 431 for an over-long Authorization', async () => {
    const big = await admin('/outbox/replay', { body: JSON.stringify({ ids: ['1'], pad: 'x'.repeat(600_000) }) });
    expect(big.status).toBe(413);
    const long = await admin('/tenants', { method: 'GET', headers: { Authorization: `Bearer ${'x'.repeat(3000)}` } });
    expect(long.status).toBe(431);
    expect(((await long.json()) as { error: { code: string } }).error.code).toBe('header_too_large');
  });

  test('a breaker reset closes an open breaker and answers the new state', async () => {
    for (let i = 0; i < 3; i++) controls.failure('beta');
    const before = (await (await admin('/tenants', { method: 'GET' })).json()) as { tenants: { tenant_id: string; breaker: string }[] };
    expect(before.tenants.find((x) => x.tenant_id === 'beta')?.breaker).toBe('open');
    const reset = await admin('/tenants/beta/breaker/reset');
    expect(reset.status).toBe(200);
    expect(await reset.json()).toEqual({ tenant_id: 'beta', breaker: 'closed', quota_tokens: 2000 });
    expect(controls.snapshot('beta').breaker).toBe('closed');
  });

  test('a breaker reset of a tenant sluice does not know is 404, and creates no breaker', async () => {
    const res = await admin('/tenants/betta/breaker/reset');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toEqual({
      code: 'not_found',
      message: 'unknown tenant betta: not in the tenants file and no records in the outbox',
    });
    const list = (await (await admin('/tenants', { method: 'GET' })).json()) as { tenants: { tenant_id: string }[] };
    expect(list.tenants.map((x) => x.tenant_id)).not.toContain('betta');
  });

  test('every admin call is one audit line and counted by route and status', async () => {
    const before = logLines.length;
    await admin('/tenants', { method: 'GET', headers: bearer(BETA) });
    await admin('/tenants/acme/breaker/reset');
    await admin('/nothing/here', { method: 'GET' });
    const audit = logLines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'admin');
    expect(audit).toEqual([
      expect.objectContaining({ level: 'info', route: '/admin/tenants', method: 'GET', status: 401 }),
      expect.objectContaining({ level: 'info', route: '/admin/tenants/:id/breaker/reset', method: 'POST', status: 200, tenant_id: 'acme', breaker: 'closed' }),
      expect.objectContaining({ level: 'info', route: '/admin/*', method: 'GET', status: 404 }),
    ]);
    const text = await (await t.app.request('/metrics')).text();
    expect(text).toMatch(/sluice_admin_requests_total\{route="\/admin\/tenants",status="401"\} [1-9]/);
    expect(text).toMatch(/sluice_admin_requests_total\{route="\/admin\/\*",status="404"\} 1/);
  });
});

describe('logs', () => {
  // Runs last: by now every token above was sent, accepted and refused, on ingest and admin routes.
  test('never contain a token', () => {
    expect(logLines.length).toBeGreaterThan(10);
    const all = logLines.join('');
    for (const token of TOKENS) expect(all).not.toContain(token);
  });
});
