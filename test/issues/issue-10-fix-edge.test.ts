import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { expectRejected, startTestApp, type TestApp } from '../support/http-app.ts';

/** Issue 10, found by the outside tester: header look-alikes, clipped error text, 404 not_found. */
describe('issue 10: header look-alikes, error text bounds, unknown routes', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  async function post(body: unknown): Promise<Response> {
    return t.app.request('/v1/events', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme' },
      body: JSON.stringify(body),
    });
  }

  const LOOK_ALIKES: [string, string][] = [
    ['TenantId', 'tenant_id'],
    ['tenantId', 'tenant_id'],
    ['tenant id', 'tenant_id'],
    ['_tenant_id', 'tenant_id'],
    ['tenant_id_', 'tenant_id'],
    ['tenant--id', 'tenant_id'],
    ['tenant__id', 'tenant_id'],
    ['t-e-n-a-n-t-i-d', 'tenant_id'],
    ['tenant\u00a0id', 'tenant_id'],
    ['tenantid', 'tenant_id'],
    ['DedupeKey', 'dedupe_key'],
    ['requestId', 'request_id'],
    ['OUTBOXID', 'outbox_id'],
    ['ingestedAt', 'ingested_at'],
    ['trace-parent', 'traceparent'],
  ];

  test.each(LOOK_ALIKES)('header %p looks like sluice\'s own %p: 400 naming it, nothing written', async (name, own) => {
    const body = await expectRejected(t, post({ payload: {}, headers: { [name]: 'v' } }), 400, 'validation_failed');
    expect(body.details).toEqual([{ path: `headers.${name}`, message: `is (or looks like) the header ${own} that sluice sets itself` }]);
  });

  test('names that only contain a reserved name, or differ by a letter, are still accepted', async () => {
    for (const name of ['tenant_ids', 'x-tenant-id', 'tenant', 'trace', 'replayed']) {
      const res = await post({ payload: {}, headers: { [name]: 'v' } });
      expect(res.status).toBe(202);
    }
  });

  test('a clipped detail message and path are 256 characters, the ellipsis included; a message 512', async () => {
    const longKey = `unknown_${'k'.repeat(600)}`;
    const unknown = await expectRejected(t, post({ payload: {}, [longKey]: 1 }), 400, 'validation_failed');
    const [detail] = unknown.details as { message: string }[];
    expect(detail?.message.length).toBe(256);
    expect(detail?.message.endsWith('…')).toBe(true);
    const longName = 'h'.repeat(600);
    const header = await expectRejected(t, post({ payload: {}, headers: { [longName]: 'v' } }), 400, 'validation_failed');
    const [named] = header.details as { path: string }[];
    expect(named?.path).toBe(`headers.${'h'.repeat(247)}…`);
    // An astral character at the cut is dropped whole, never left as half a surrogate pair.
    const astral = await expectRejected(t, post({ payload: {}, headers: { [`${'h'.repeat(246)}😀😀😀`]: 'v' } }), 400, 'validation_failed');
    const [cut] = astral.details as { path: string }[];
    expect(cut?.path).toBe(`headers.${'h'.repeat(246)}…`);
    const wide = await t.app.request(`/${'p'.repeat(2000)}`);
    const text = (await wide.json()) as { error: { code: string; message: string } };
    expect(text.error.message.length).toBe(512);
    expect(text.error.message.endsWith('…')).toBe(true);
  });

  test('an unknown path or method is 404 not_found, as the README lists', async () => {
    for (const [method, path] of [['GET', '/nope'], ['DELETE', '/v1/events'], ['POST', '/v2/events']] as const) {
      const res = await t.app.request(path, { method });
      expect(res.status).toBe(404);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error).toEqual({ code: 'not_found', message: `no route for ${method} ${path}` });
    }
  });
});
