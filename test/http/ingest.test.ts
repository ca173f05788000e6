import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { expectRejected, startTestApp, type RejectedBody, type TestApp } from '../support/http-app.ts';
import type { TestDatabase } from '../support/postgres.ts';

const MAX_BODY = 4096;
let t: TestApp;
let db: TestDatabase;
let app: TestApp['app'];
let draining = false;

beforeAll(async () => {
  t = await startTestApp({ maxBodyBytes: MAX_BODY, draining: () => draining });
  ({ db, app } = t);
});

afterAll(async () => {
  await t.close();
});

beforeEach(async () => {
  draining = false;
});

async function post(body: string, headers: Record<string, string> = {}): Promise<Response> {
  return app.request('/v1/events', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme', ...headers },
    body,
  });
}

function journalLines(): Record<string, unknown>[] {
  return t.journalLines();
}

/** Runs a request that must be rejected and checks that neither the outbox nor the journal grew. */
async function rejected(res: Promise<Response>, status: number, code: string): Promise<RejectedBody> {
  return expectRejected(t, res, status, code);
}

describe('POST /v1/events', () => {
  test('202 with the record id; journal line and outbox row hold the event', async () => {
    const res = await post(JSON.stringify({ dedupe_key: 'order-1', payload: { amount: 5 }, headers: { source: 'pos' } }), {
      'X-Request-ID': 'req-abc',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ id: expect.any(String), tenant_id: 'acme', dedupe_key: 'order-1', duplicate: false, durability: 'outbox' });
    expect(res.headers.get('X-Request-ID')).toBe('req-abc');
    const line = journalLines().find((l) => l.dedupe_key === 'order-1');
    expect(line).toMatchObject({ tenant_id: 'acme', topic: 'sluice.events', request_id: 'req-abc', headers: { source: 'pos' }, payload: { amount: 5 } });
    const [row] = await db.sql`SELECT id::text, tenant_id, dedupe_key, payload_text AS payload, status, request_id, traceparent FROM outbox WHERE dedupe_key = 'order-1'`;
    expect(row).toEqual({
      id: body.id,
      tenant_id: 'acme',
      dedupe_key: 'order-1',
      payload: '{"amount":5}',
      status: 'pending',
      request_id: 'req-abc',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
  });

  test('regression (outside test of issue 11, seventh round): a traceparent W3C calls invalid (all-zero ids, version ff) is accepted and not passed on', async () => {
    const invalid = [
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ];
    for (const [i, traceparent] of invalid.entries()) {
      const res = await post(JSON.stringify({ dedupe_key: `tp-${i}`, payload: {} }), { traceparent });
      expect(res.status).toBe(202);
    }
    const rows = await db.sql`SELECT dedupe_key, traceparent FROM outbox WHERE dedupe_key LIKE 'tp-%' ORDER BY dedupe_key`;
    expect(rows.map((r) => [r.dedupe_key, r.traceparent])).toEqual([
      ['tp-0', null],
      ['tp-1', null],
      ['tp-2', null],
    ]);
    const lines = journalLines().filter((l) => typeof l.dedupe_key === 'string' && l.dedupe_key.startsWith('tp-'));
    expect(lines.length).toBe(3);
    for (const line of lines) expect(line.traceparent).toBeUndefined();
  });

  test('a header name repeated in an event keeps its last value; a payload keeps its repeated names as sent', async () => {
    const res = await post('{"dedupe_key":"rep-1","payload":{"x":1,"x":2},"headers":{"a":"1","b":"k","a":"2"}}');
    expect(res.status).toBe(202);
    const [row] = await db.sql`SELECT payload_text AS payload, headers FROM outbox WHERE dedupe_key = 'rep-1'`;
    expect(row).toEqual({ payload: '{"x":1,"x":2}', headers: { a: '2', b: 'k' } });
  });

  test('the same dedupe_key again answers 200 duplicate with the first id; one outbox row', async () => {
    const first = await post(JSON.stringify({ dedupe_key: 'dup-1', payload: { n: 1 } }));
    const again = await post(JSON.stringify({ dedupe_key: 'dup-1', payload: { n: 2 } }));
    expect(first.status).toBe(202);
    expect(again.status).toBe(200);
    const a = (await first.json()) as { id: string };
    const b = (await again.json()) as { id: string; duplicate: boolean };
    expect(b.id).toBe(a.id);
    expect(b.duplicate).toBe(true);
    const rows = await db.sql`SELECT payload_text AS payload FROM outbox WHERE dedupe_key = 'dup-1'`;
    expect(rows.map((r) => r.payload)).toEqual(['{"n":1}']);
  });

  test('dedupe_key falls back to X-Idempotency-Key, then X-Request-ID, then a UUIDv7', async () => {
    const byIdem = await post(JSON.stringify({ payload: {} }), { 'X-Idempotency-Key': 'idem-1', 'X-Request-ID': 'rid-1' });
    expect(((await byIdem.json()) as { dedupe_key: string }).dedupe_key).toBe('idem-1');
    const byReq = await post(JSON.stringify({ payload: {} }), { 'X-Request-ID': 'rid-2' });
    expect(((await byReq.json()) as { dedupe_key: string }).dedupe_key).toBe('rid-2');
    const generated = await post(JSON.stringify({ payload: {} }));
    expect(((await generated.json()) as { dedupe_key: string }).dedupe_key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  test('tenant from X-Soma-Tenant, body tenant_id, or namespace tenant:ns', async () => {
    const cases: [Record<string, string>, Record<string, unknown>, string][] = [
      [{ 'X-Soma-Tenant': 'soma' }, {}, 'soma'],
      [{}, { tenant_id: 'bodyt' }, 'bodyt'],
      [{}, { namespace: 'nst:orders' }, 'nst'],
    ];
    for (const [h, extra, tenant] of cases) {
      const res = await app.request('/v1/events', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...h },
        body: JSON.stringify({ payload: {}, ...extra }),
      });
      expect(res.status).toBe(202);
      expect(((await res.json()) as { tenant_id: string }).tenant_id).toBe(tenant);
    }
  });

  test('400 invalid_json for a body that is not JSON', async () => {
    const err = await rejected(post('{"payload": '), 400, 'invalid_json');
    expect(err.message).toContain('not valid JSON');
  });

  test('400 validation_failed names every bad field with its path', async () => {
    const err = await rejected(
      post(JSON.stringify({ payload: [1], topic: 'bad topic!', headers: { tenant_id: 'x', ok: 5 }, extra: 1 })),
      400,
      'validation_failed',
    );
    const paths = (err.details as { path: string }[]).map((d) => d.path).sort();
    expect(paths).toEqual(['(root)', 'headers.ok', 'headers.tenant_id', 'payload', 'topic']);
  });

  test('a payload holding \\u0000 or lone surrogate escapes is kept as sent (text, not jsonb); the same in a header value is 400', async () => {
    const lines = ['{"dedupe_key":"nul","payload":{"a":{"b":"x\\u0000y"}}}', '{"dedupe_key":"lone","payload":{"k":{"\\udc00":1}}}'];
    const res = await post(lines.join('\n'), { 'Content-Type': 'application/x-ndjson' });
    expect(res.status).toBe(202);
    const rows = await db.sql<{ payload: string }[]>`SELECT payload_text AS payload FROM outbox WHERE dedupe_key IN ('nul', 'lone') ORDER BY id`;
    expect(rows.map((r) => r.payload)).toEqual(['{"a":{"b":"x\\u0000y"}}', '{"k":{"\\udc00":1}}']);
    const err = await rejected(post(JSON.stringify({ payload: {}, headers: { h: 'x\u0000y' } })), 400, 'validation_failed');
    expect(err.details).toEqual([{ path: 'headers.h', message: 'must be valid Unicode without NUL characters' }]);
  });

  test('400 when no tenant is claimed, or claims disagree', async () => {
    const none = await rejected(
      Promise.resolve(app.request('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ payload: {} }) })),
      400,
      'validation_failed',
    );
    expect(JSON.stringify(none.details)).toContain('no tenant');
    const conflict = await rejected(post(JSON.stringify({ payload: {}, tenant_id: 'other' })), 400, 'validation_failed');
    expect(JSON.stringify(conflict.details)).toContain('conflicting tenants');
  });

  test('413 payload_too_large over SLUICE_MAX_BODY_BYTES, declared or streamed', async () => {
    const big = JSON.stringify({ payload: { s: 'x'.repeat(MAX_BODY) } });
    await rejected(post(big), 413, 'payload_too_large');
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    await rejected(
      Promise.resolve(
        app.request('/v1/events', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme' },
          body: stream,
          duplex: 'half',
        } as RequestInit),
      ),
      413,
      'payload_too_large',
    );
  });

  test('415 for a content type other than JSON or NDJSON', async () => {
    const err = await rejected(post('payload=1', { 'Content-Type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    expect(err.message).toContain('application/json');
  });

  test('503 shutting_down with Retry-After while draining', async () => {
    draining = true;
    const err = await rejected(post(JSON.stringify({ payload: {} })), 503, 'shutting_down');
    expect(err.headers.get('Retry-After')).toBe('1');
  });

  test('the route answers alike by the direct path (exact path, a query) and through Hono (an encoded path); a neighbour is 404', async () => {
    const send = (path: string, key: string, headers: Record<string, string> = {}) =>
      app.request(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme', ...headers }, body: JSON.stringify({ dedupe_key: key, payload: {} }) });
    for (const [path, key] of [['/v1/events', 'route-1'], ['/v1/events?x=1', 'route-2'], ['/v1/%65vents', 'route-3']] as const) {
      const res = await send(path, key, { 'X-Request-ID': `rq-${key}` });
      expect(res.status).toBe(202);
      expect(res.headers.get('X-Request-ID')).toBe(`rq-${key}`);
      expect(res.headers.get('Content-Type')).toBe('application/json');
      expect(((await res.json()) as { dedupe_key: string }).dedupe_key).toBe(key);
      // An error takes the same shape and headers on either path.
      const refused = await send(path, `${key}-bad`, { 'X-Request-ID': `rq-${key}-bad`, 'X-Idempotency-Key': ' ' });
      expect(refused.status).toBe(400);
      expect(refused.headers.get('X-Request-ID')).toBe(`rq-${key}-bad`);
      expect(refused.headers.get('Content-Type')).toBe('application/json');
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('validation_failed');
    }
    for (const path of ['/v1/events/', '/v1/eventsx', '/v1/event']) expect((await send(path, 'route-none')).status).toBe(404);
    expect((await app.request('/v1/events')).status).toBe(404);
  });

  test('404 in the error shape for unknown routes', async () => {
    const res = await app.request('/v2/nothing');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});

describe('POST /v1/events with NDJSON', () => {
  const ndjson = (lines: string[]) =>
    post(lines.join('\n'), { 'Content-Type': 'application/x-ndjson' });

  test('accepts a batch in one request; results in line order', async () => {
    const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ dedupe_key: `b-${i}`, payload: { i } }));
    const res = await ndjson([...lines, JSON.stringify({ dedupe_key: 'b-0', payload: {} })]);
    expect(res.status).toBe(202);
    const body = (await res.json()) as { accepted: number; duplicates: number; results: { dedupe_key: string; duplicate: boolean }[] };
    expect(body.accepted).toBe(50);
    expect(body.duplicates).toBe(1);
    expect(body.results.map((r) => r.dedupe_key)).toEqual([...Array.from({ length: 50 }, (_, i) => `b-${i}`), 'b-0']);
  });

  test('a batch with bad lines writes nothing and names each line', async () => {
    const err = await rejected(
      ndjson([JSON.stringify({ payload: {} }), '{nope', JSON.stringify({ payload: 'x' }), JSON.stringify({ payload: {} })]),
      400,
      'invalid_json',
    );
    expect((err.details as { line: number }[]).map((d) => d.line)).toEqual([2, 3]);
  });

  test('regression (outside test of issue 11): a line led by U+FEFF or NBSP is refused as JSON.parse refuses it, not accepted or skipped as blank', async () => {
    const good = JSON.stringify({ payload: { q: 1 } });
    for (const lead of ['\uFEFF', '\u00A0']) {
      for (const lines of [[good, `${lead}${JSON.stringify({ payload: { q: 2 } })}`], [good, lead]]) {
        const err = await rejected(ndjson(lines), 400, 'invalid_json');
        expect((err.details as { line: number; message: string }[]).map((d) => [d.line, d.message.startsWith('not valid JSON: ')])).toEqual([[2, true]]);
      }
    }
    // JSON's own whitespace around a line (space, tab, CR of a CRLF) is still fine.
    const res = await ndjson([` \t${good}\r`, '\t \r', good]);
    expect(res.status).toBe(202);
  });
});

describe('health endpoints', () => {
  test('/healthz answers ok, /readyz reports components, 503 while draining', async () => {
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', components: { journal: { ok: true, required: true } } });
    draining = true;
    const drain = await app.request('/readyz');
    expect(drain.status).toBe(503);
    // Still each component's state, so an operator sees why a draining node may also be unhealthy.
    expect(await drain.json()).toEqual({ status: 'draining', components: { journal: { ok: true, required: true } } });
  });

  test('/metrics exposes ingest counters by status and tenant in Prometheus text', async () => {
    await post(JSON.stringify({ payload: {} }));
    const res = await app.request('/metrics');
    const text = await res.text();
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(text).toMatch(/sluice_ingest_requests_total\{status="202",tenant="acme"\} \d+/);
    expect(text).toContain('sluice_ingest_request_duration_seconds_bucket');
  });

  test('/metrics: the ingest latency histogram counts each request once, under its own status', async () => {
    const counts = async (): Promise<Record<string, number>> => {
      const text = await (await app.request('/metrics')).text();
      const found: Record<string, number> = {};
      for (const m of text.matchAll(/^sluice_ingest_request_duration_seconds_count\{status="(\d+)"\} (\d+)$/gm)) found[m[1] as string] = Number(m[2]);
      return found;
    };
    const before = await counts();
    for (let i = 0; i < 3; i++) expect((await post(JSON.stringify({ payload: {} }))).status).toBe(202);
    for (let i = 0; i < 2; i++) expect((await post('{')).status).toBe(400);
    const after = await counts();
    expect((after['202'] ?? 0) - (before['202'] ?? 0)).toBe(3);
    expect((after['400'] ?? 0) - (before['400'] ?? 0)).toBe(2);
  });
});
