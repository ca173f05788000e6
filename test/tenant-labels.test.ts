import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTenantsFile, NO_TENANTS_FILE, Tenants } from '../src/tenants.ts';
import { startTestApp } from './support/http-app.ts';
import { quietLog } from './support/postgres.ts';
import { writeTenantsFile } from './support/tenants.ts';

describe('SLUICE_METRIC_TENANTS caps the tenant label', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-labels-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('open mode: the first tenants keep their names for good, later ones are ~other', () => {
    const tenants = new Tenants(NO_TENANTS_FILE, quietLog, { metricTenants: 2 });
    expect(['a', 'b', 'c', 'a', 'd', 'b'].map((t) => tenants.metricLabel(t))).toEqual(['a', 'b', '~other', 'a', '~other', 'b']);
  });

  test('authenticated mode: only the file\'s tenants are named, and at most the cap of them', () => {
    const file = join(dir, 'tenants.json');
    writeTenantsFile(file, { x: { tokens: ['tx-0123456789abcdef'] }, y: { tokens: ['ty-0123456789abcdef'] }, z: { tokens: ['tz-0123456789abcdef'] } });
    const tenants = new Tenants(loadTenantsFile(file), quietLog, { metricTenants: 2 });
    // A tenant outside the file takes no slot.
    expect(['stranger', 'y', 'x', 'z', 'y'].map((t) => tenants.metricLabel(t))).toEqual(['~other', 'y', 'x', '~other', 'y']);
  });

  test('/metrics shows at most the cap of ingest tenants, the rest summed under ~other', async () => {
    const t = await startTestApp({ tenants: new Tenants(NO_TENANTS_FILE, quietLog, { metricTenants: 3 }) });
    try {
      for (let i = 0; i < 10; i++) {
        const res = await t.app.request('/v1/events', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': `tenant-${i}` },
          body: JSON.stringify({ dedupe_key: `k${i}`, payload: { i } }),
        });
        expect(res.status).toBe(202);
      }
      const text = await (await t.app.request('/metrics')).text();
      const events = text.split('\n').filter((l) => l.startsWith('sluice_ingest_events_total{'));
      const labels = events.map((l) => /tenant="([^"]+)"/.exec(l)?.[1]).sort();
      expect(labels).toEqual(['tenant-0', 'tenant-1', 'tenant-2', '~other']);
      expect(events.find((l) => l.includes('tenant="~other"'))).toEndWith(' 7');
      const requests = new Set(text.split('\n').filter((l) => l.startsWith('sluice_ingest_requests_total{')).map((l) => /tenant="([^"]+)"/.exec(l)?.[1]));
      expect([...requests].sort()).toEqual(['tenant-0', 'tenant-1', 'tenant-2', '~other']);
    } finally {
      await t.close();
    }
  });

  test('tenants named like the buckets keep series of their own, apart from ~other, ~multiple and ~unknown', async () => {
    const t = await startTestApp({ tenants: new Tenants(NO_TENANTS_FILE, quietLog, { metricTenants: 3 }) });
    const post = async (body: string, headers: Record<string, string>): Promise<number> =>
      (await t.app.request('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/x-ndjson', ...headers }, body })).status;
    try {
      for (const tenant of ['_other', 'multiple', 'unknown', 'past-the-cap']) expect(await post(JSON.stringify({ payload: {} }), { 'X-Tenant-Id': tenant })).toBe(202);
      const mixed = [{ tenant_id: 'multiple', payload: {} }, { tenant_id: 'unknown', payload: {} }].map((e) => JSON.stringify(e)).join('\n');
      expect(await post(mixed, {})).toBe(202);
      // Refused before its body named a tenant: the header alone does not label a request.
      expect(await post('{"payload":', { 'X-Tenant-Id': 'unknown' })).toBe(400);
      expect(await post('', { 'Content-Type': 'text/plain' })).toBe(415);
      const text = await (await t.app.request('/metrics')).text();
      const series = (name: string): string[] =>
        text.split('\n').filter((l) => l.startsWith(`${name}{`)).map((l) => `${/status="(\d+)"/.exec(l)?.[1] ?? ''}${/tenant="([^"]+)"/.exec(l)?.[1]} ${l.split(' ').at(-1)}`).sort();
      expect(series('sluice_ingest_events_total').map((l) => l.replace(/^\d*/, ''))).toEqual(['_other 1', 'multiple 2', 'unknown 2', '~other 1']);
      expect(series('sluice_ingest_requests_total')).toEqual(['202_other 1', '202multiple 1', '202unknown 1', '202~multiple 1', '202~other 1', '400~unknown 1', '415~unknown 1']);
    } finally {
      await t.close();
    }
  });
});
