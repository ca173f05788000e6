import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { readTopic } from '../support/kafka.ts';
import { eventually, postEvent, sluiceFixture } from '../support/sluice.ts';
import { nodeJournalLines } from '../support/journal-files.ts';

describe('ingest → journal → outbox → Kafka', () => {
  const f = sluiceFixture();

  test('a posted event is published with its key, JSON value and headers', async () => {
    const res = await postEvent(
      f.sluice.url,
      { dedupe_key: 'order-42', payload: { amount: 42, items: ['a', 'b'] }, headers: { source: 'pos-7' } },
      {
        'X-Tenant-Id': 'acme',
        'X-Request-ID': 'req-42',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    );
    expect(res.status).toBe(202);
    const ack = (await res.json()) as { id: string; durability: string };
    expect(ack.durability).toBe('outbox');

    const [record, ...rest] = await readTopic(f.brokers, f.sluice.topic, { expected: 1 });
    expect(rest).toEqual([]);
    expect(record?.topic).toBe(f.sluice.topic);
    expect(record?.key).toBe('acme:order-42');
    expect(JSON.parse(record?.value ?? 'null')).toEqual({ amount: 42, items: ['a', 'b'] });
    expect(record?.headers).toEqual({
      source: 'pos-7',
      tenant_id: 'acme',
      dedupe_key: 'order-42',
      outbox_id: ack.id,
      request_id: 'req-42',
      ingested_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });

    // The journal line for the same write is on disk.
    const nodeDir = join(f.sluice.journalDir, 'test-node');
    const lines = nodeJournalLines(nodeDir).map((l) => JSON.parse(l) as { dedupe_key: string; ts: string });
    const line = lines.find((l) => l.dedupe_key === 'order-42');
    expect(line?.ts).toBe(record?.headers.ingested_at);

    await eventually(async () => {
      const [row] = await f.db.sql<{ status: string }[]>`SELECT status FROM outbox WHERE id = ${ack.id}`;
      return row?.status === 'sent';
    }, 10_000, 'row marked sent');
  });

  test('the same dedupe_key twice: 202 then 200, one outbox row, one Kafka record', async () => {
    const first = await postEvent(f.sluice.url, { dedupe_key: 'once', payload: { n: 1 } }, { 'X-Tenant-Id': 'dup' });
    const second = await postEvent(f.sluice.url, { dedupe_key: 'once', payload: { n: 2 } }, { 'X-Tenant-Id': 'dup' });
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    const a = (await first.json()) as { id: string };
    expect(await second.json()).toEqual({ id: a.id, tenant_id: 'dup', dedupe_key: 'once', duplicate: true, durability: 'outbox' });
    const rows = await f.db.sql`SELECT id FROM outbox WHERE tenant_id = 'dup'`;
    expect(rows.length).toBe(1);
    const records = (await readTopic(f.brokers, f.sluice.topic, { expected: 2, graceMs: 1_500 })).filter((r) => r.key.startsWith('dup:'));
    expect(records.map((r) => [r.key, r.value])).toEqual([['dup:once', '{"n":1}']]);
  });

  test('/readyz reports journal, journal integrity, outbox and kafka ready; /metrics counts published records per tenant', async () => {
    const ready = await fetch(`${f.sluice.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      components: {
        journal: { ok: true, required: true },
        journal_integrity: { ok: true, required: true },
        outbox: { ok: true, required: true },
        forwarder: { ok: true, required: true },
        kafka: { ok: true, required: false },
      },
    });
    const metrics = await (await fetch(`${f.sluice.url}/metrics`)).text();
    expect(metrics).toMatch(/sluice_published_total\{tenant="acme"\} 1/);
    expect(metrics).toMatch(/sluice_outbox_pending\{tenant="acme"\} 0/);
    expect(metrics).toMatch(/sluice_ingest_requests_total\{status="200",tenant="dup"\} 1/);
  });
});
