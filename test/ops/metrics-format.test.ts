import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VERSION } from '../../src/version.ts';
import { newToken, writeTenantsFile } from '../support/tenants.ts';
import { promtool } from '../support/promtool.ts';
import { postEvent, sluiceFixture } from '../support/sluice.ts';

describe('/metrics of a running sluice', () => {
  const f = sluiceFixture();

  test('passes `promtool check metrics` with no complaint, per-tenant series included', async () => {
    for (const [tenant, key] of [['acme', 'a-1'], ['globex', 'g-1'], ['acme', 'a-1']] as const) {
      const res = await postEvent(f.sluice.url, { dedupe_key: key, payload: { n: 1 } }, { 'X-Tenant-Id': tenant });
      expect(res.status).toBeLessThan(300);
    }
    const res = await fetch(`${f.sluice.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    // The scrape must carry the per-tenant series, or promtool would be checking an empty shell.
    expect(text).toContain('sluice_outbox_pending{tenant="acme"}');
    expect(text).toContain('sluice_ingest_events_total{tenant="acme",result="duplicate"} 1');
    expect(text).toContain('sluice_ingest_requests_total{status="202",tenant="globex"} 1');

    const check = await promtool(['check', 'metrics'], text);
    expect({ exitCode: check.exitCode, complaints: `${check.stdout}${check.stderr}`.split('\n').filter((l) => l.trim() !== '') }).toEqual({
      exitCode: 0,
      complaints: [],
    });
  });
});

describe('/metrics before anything happened, with a tenants file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-tenants-'));
  writeTenantsFile(join(dir, 'tenants.json'), { acme: { tokens: [newToken('acme')] }, globex: { tokens: [newToken('globex')] } });
  const f = sluiceFixture({ SLUICE_TENANTS_FILE: join(dir, 'tenants.json') });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("every file tenant's counters exist at 0, build info and Kafka reachability are there, promtool is content", async () => {
    const ready = await fetch(`${f.sluice.url}/readyz`);
    expect(ready.status).toBe(200);
    const text = await (await fetch(`${f.sluice.url}/metrics`)).text();
    for (const tenant of ['acme', 'globex']) {
      for (const series of [
        `sluice_dead_total{tenant="${tenant}"} 0`,
        `sluice_published_total{tenant="${tenant}"} 0`,
        `sluice_publish_retries_total{tenant="${tenant}"} 0`,
        `sluice_quota_throttled_total{tenant="${tenant}"} 0`,
        `sluice_backlog_rejected_total{tenant="${tenant}"} 0`,
        `sluice_ingest_events_total{tenant="${tenant}",result="accepted"} 0`,
        `sluice_replayed_total{tenant="${tenant}",kind="tenant"} 0`,
        // Regression (outside test): the dashboard's tenant variable reads these gauges.
        `sluice_outbox_pending{tenant="${tenant}"} 0`,
        `sluice_outbox_dead{tenant="${tenant}"} 0`,
      ]) {
        expect(text).toContain(series);
      }
    }
    expect(text).toContain(`sluice_build_info{version="${VERSION}",bun="${Bun.version}"} 1`);
    expect(text).toContain(`sluice_kafka_reachable{brokers="${f.brokers.join(',')}"} 1`);
    const check = await promtool(['check', 'metrics'], text);
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
    expect(check.exitCode).toBe(0);
  });
});
