import { afterAll, describe, expect, setSystemTime, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TenantLabels } from '../src/tenant-labels.ts';
import { loadTenantsFile, NO_TENANTS_FILE, Tenants } from '../src/tenants.ts';
import { startTestApp } from './support/http-app.ts';
import { eventually, postEvent, sluiceFixture } from './support/sluice.ts';
import { quietLog } from './support/postgres.ts';
import { writeTenantsFile } from './support/tenants.ts';

describe('SLUICE_METRIC_TENANTS caps the tenant label', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-labels-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('open mode: within a window the first tenants are named, later ones are ~other', () => {
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

describe('the busiest tenants take the labels when a window ends', () => {
  const clocked = (cap: number): { labels: TenantLabels; dropped: string[]; tick: (ms: number) => void } => {
    let now = 0;
    const labels = new TenantLabels({ cap, windowMs: 1_000, now: () => now });
    const dropped: string[] = [];
    labels.onDropped((t) => dropped.push(t));
    return { labels, dropped, tick: (ms) => (now += ms) };
  };
  const times = (labels: TenantLabels, tenant: string, n: number): string[] => Array.from({ length: n }, () => labels.label(tenant));

  test('a busy latecomer takes the quietest label at the end of the window, not before', () => {
    const { labels, dropped, tick } = clocked(2);
    expect([labels.label('quiet'), ...times(labels, 'steady', 5)]).toEqual(['quiet', ...Array(5).fill('steady')]);
    // Inside the window the labels hold, however busy the newcomer.
    expect(new Set(times(labels, 'busy', 50))).toEqual(new Set(['~other']));
    tick(1_000);
    expect(labels.label('busy')).toBe('busy');
    expect(dropped).toEqual(['quiet']);
    expect([labels.label('quiet'), labels.label('steady')]).toEqual(['~other', 'steady']);
  });

  test('regression (issue 15): what a scrape reads does not count as activity, so idle named tenants do not keep their labels by being scraped', () => {
    const { labels, dropped, tick } = clocked(2);
    expect([labels.label('idle1'), labels.label('idle2')]).toEqual(['idle1', 'idle2']);
    // A scrape every 0.2 s reads both labels (the outbox gauges); the writer arrives with real traffic.
    for (let i = 0; i < 200; i++) {
      expect([labels.current('idle1'), labels.current('idle2')]).toEqual(['idle1', 'idle2']);
      if (i % 20 === 0) labels.label('writer');
    }
    tick(1_000);
    expect(labels.label('writer')).toBe('writer');
    expect(dropped.length).toBe(1);
  });

  test('churn is bounded: twice as busy to take a label, one window of grace after it, cap/10 changes a window', () => {
    const { labels, dropped, tick } = clocked(20);
    const named = Array.from({ length: 20 }, (_, i) => `n${i}`);
    for (const t of named) times(labels, t, 10);
    // Not more than twice as busy as the quietest named tenant: no change.
    times(labels, 'close', 20);
    tick(1_000);
    expect(labels.label('close')).toBe('~other');
    expect(dropped).toEqual([]);
    // Five newcomers far busier than everyone: only cap/10 = 2 of them get a label this time.
    for (const t of named) times(labels, t, 10);
    for (const t of ['b0', 'b1', 'b2', 'b3', 'b4']) times(labels, t, 100);
    tick(1_000);
    expect(['b0', 'b1', 'b2', 'b3', 'b4'].filter((t) => labels.label(t) === t)).toHaveLength(2);
    expect(dropped).toHaveLength(2);
    // The two just promoted fall quiet, yet keep their labels for the next window.
    const promoted = ['b0', 'b1', 'b2', 'b3', 'b4'].filter((t) => labels.label(t) === t);
    for (const t of named) times(labels, t, 10);
    for (const t of ['b2', 'b3', 'b4', 'x']) times(labels, t, 100);
    tick(1_000);
    labels.label('x');
    expect(promoted.filter((t) => labels.label(t) === t)).toEqual(promoted);
    expect(dropped).toHaveLength(4);
  });

  test('authenticated mode alike: a busy tenant of the file takes the label of a quiet one; strangers never get one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-labels-'));
    try {
      const file = join(dir, 'tenants.json');
      writeTenantsFile(file, { x: { tokens: ['tx-0123456789abcdef'] }, y: { tokens: ['ty-0123456789abcdef'] }, z: { tokens: ['tz-0123456789abcdef'] } });
      let now = 0;
      const tenants = new Tenants(loadTenantsFile(file), quietLog, { metricTenants: 2, metricWindowMs: 1_000, now: () => now });
      expect(tenants.labelledConfigured()).toEqual(['x', 'y']);
      for (let i = 0; i < 20; i++) tenants.metricLabel('z');
      for (let i = 0; i < 100; i++) tenants.metricLabel('stranger');
      tenants.metricLabel('y');
      now += 1_000;
      expect(['z', 'y', 'x', 'stranger'].map((t) => tenants.metricLabel(t))).toEqual(['z', 'y', '~other', '~other']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an idle tenant loses nothing without a busier one, and a window with no update is not evaluated', () => {
    const { labels, dropped, tick } = clocked(1);
    labels.label('only');
    tick(60_000);
    expect(labels.label('only')).toBe('only');
    expect(dropped).toEqual([]);
  });

  const WINDOW_MS = 6_000;
  const f = sluiceFixture({ SLUICE_METRIC_TENANTS: '3', SLUICE_METRIC_TENANTS_WINDOW_MS: String(WINDOW_MS) });

  test('over HTTP: a busy tenant arriving after the cap is full gets its label after the window, the quiet ones fold into ~other, the series stay bounded', async () => {
    const post = async (tenant: string, key: string): Promise<void> => {
      const res = await postEvent(f.sluice.url, { dedupe_key: key, payload: {} }, { 'X-Tenant-Id': tenant });
      expect(res.status).toBe(202);
    };
    const scrape = async (): Promise<string[]> => (await (await fetch(`${f.sluice.url}/metrics`)).text()).split('\n');
    const tenantsOf = (lines: string[], metric: string): string[] =>
      [...new Set(lines.filter((l) => l.startsWith(`${metric}{`)).map((l) => /tenant="([^"]+)"/.exec(l)?.[1] ?? ''))].sort();
    const batch = async (events: { tenant_id: string; dedupe_key: string }[]): Promise<void> => {
      const body = events.map((e) => JSON.stringify({ ...e, payload: {} })).join('\n');
      const res = await fetch(`${f.sluice.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/x-ndjson' }, body });
      expect(res.status).toBe(202);
    };
    // The windows run on the wall clock (Date.now), held still here: all of the first part falls in
    // the first window however slow the machine, and the window ends when the test moves the clock.
    const start = Date.now();
    setSystemTime(start);
    let lines: string[];
    try {
      for (const t of ['q1', 'q2', 'q3']) await post(t, `${t}-1`);
      await batch(Array.from({ length: 30 }, (_, i) => ({ tenant_id: 'busy', dedupe_key: `b${i}` })));
      await batch(Array.from({ length: 20 }, (_, i) => ({ tenant_id: `drive-by-${i}`, dedupe_key: 'k' })));
      expect(tenantsOf(await scrape(), 'sluice_ingest_events_total')).toEqual(['q1', 'q2', 'q3', '~other']);

      // The window began with q1's write (the process saw no tenant before it); this is its last instant.
      setSystemTime(start + WINDOW_MS - 1);
      await post('busy', 'in-the-window');
      expect(tenantsOf(await scrape(), 'sluice_ingest_events_total')).toEqual(['q1', 'q2', 'q3', '~other']);
      setSystemTime(start + WINDOW_MS);
      await post('busy', 'after-the-window');
      await eventually(async () => tenantsOf(await scrape(), 'sluice_ingest_events_total').includes('busy') && tenantsOf(await scrape(), 'sluice_ingest_events_total').length === 4, 5_000, 'the busy tenant named, one quiet one dropped');
      lines = await scrape();
    } finally {
      setSystemTime();
    }
    expect(lines).toContain('sluice_ingest_events_total{tenant="busy",result="accepted"} 1');
    // Everything before its label was counted under ~other, and stays there.
    expect(lines).toContain('sluice_ingest_events_total{tenant="~other",result="accepted"} 51');
    // Every per-tenant series of the whole registry: the cap's three plus the buckets.
    const perTenant = new Set(lines.filter((l) => !l.startsWith('#')).map((l) => /tenant="([^"]+)"/.exec(l)?.[1]).filter((t) => t !== undefined));
    expect(perTenant.size).toBeLessThanOrEqual(3 + 3);
    expect([...perTenant].filter((t) => !t.startsWith('~'))).toHaveLength(3);
  }, 60_000);
});
