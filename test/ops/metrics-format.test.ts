import { describe, expect, test } from 'bun:test';
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
