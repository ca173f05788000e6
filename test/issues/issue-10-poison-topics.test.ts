import { describe, expect, test } from 'bun:test';
import type { Sql } from '../../src/outbox/db.ts';
import { insertRows, rowFor } from '../../src/outbox/repository.ts';
import { readTopic } from '../support/kafka.ts';
import { eventually, postEvent, sluiceFixture } from '../support/sluice.ts';

/**
 * Issue 10: one write with a hostile topic crashed the processor (`__consumer_offsets`), stalled its
 * tenant while charging unrelated rows (`.`, `..`), or stalled every tenant of its partition forever
 * (`sluice_events`, colliding with `sluice.events`). Every tenant shares one partition here.
 */
describe('issue 10: hostile topics are refused at ingest and, if they get into the outbox, die alone', () => {
  const progress = `issue10.${Bun.randomUUIDv7()}.progress`;
  const f = sluiceFixture({ SLUICE_PARTITIONS: '1', SLUICE_RETRY_BASE_MS: '100', SLUICE_PROGRESS_TOPIC: progress });

  async function row(sql: Sql, tenant: string, key: string, topic: string): Promise<string> {
    const [r] = await insertRows(sql, [
      rowFor({ tenant_id: tenant, dedupe_key: key, topic, request_id: 'r', headers: {}, payload: `{"k":"${key}"}`, ts: new Date().toISOString() }, 1),
    ]);
    return r?.id ?? '';
  }

  async function status(id: string): Promise<{ status: string; attempts: number; last_error: string | null } | undefined> {
    const [r] = await f.db.sql<{ status: string; attempts: number; last_error: string | null }[]>`
      SELECT status, attempts, last_error FROM outbox WHERE id = ${id}`;
    return r;
  }

  test('ingest answers 400 naming the rule for ., .., __*, the progress topic and a ./_ collision; nothing is written', async () => {
    const { rows: before } = await count(f.db.sql);
    const cases: [string, string][] = [
      ['__consumer_offsets', 'names an internal Kafka topic'],
      ['.', 'is not a valid Kafka topic name'],
      ['..', 'is not a valid Kafka topic name'],
      [f.sluice.topic.replaceAll('.', '_'), `collides with topic ${f.sluice.topic} (Kafka treats . and _ alike)`],
      [progress, 'is sluice\'s progress topic'],
      [progress.replaceAll('.', '_'), `collides with topic ${progress} (Kafka treats . and _ alike)`],
    ];
    for (const [topic, reason] of cases) {
      const res = await postEvent(f.sluice.url, { payload: {}, topic }, { 'X-Tenant-Id': 'hostile' });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; details: { path: string; message: string }[] } };
      expect(body.error.code).toBe('validation_failed');
      expect(body.error.details).toEqual([{ path: 'topic', message: `${topic} ${reason}` }]);
    }
    expect((await count(f.db.sql)).rows).toBe(before);
  });

  test('a __consumer_offsets row already in the outbox is dead with its reason; the process lives and other tenants publish', async () => {
    const poison = await row(f.db.sql, 'hostile', 'internal', '__consumer_offsets');
    const dot = await row(f.db.sql, 'hostile', 'dot', '.');
    const collide = await row(f.db.sql, 'hostile', 'collide', f.sluice.topic.replaceAll('.', '_'));
    const fine = await row(f.db.sql, 'hostile', 'fine', f.sluice.topic);
    const other = await row(f.db.sql, 'innocent', 'other', f.sluice.topic);
    await eventually(async () => (await status(other))?.status === 'sent', 15_000, 'the innocent tenant published');
    await eventually(async () => (await status(fine))?.status === 'sent', 15_000, 'the hostile tenant\'s good row published');
    expect(await status(poison)).toEqual({ status: 'dead', attempts: 1, last_error: 'topic __consumer_offsets names an internal Kafka topic' });
    expect(await status(dot)).toEqual({ status: 'dead', attempts: 1, last_error: 'topic . is not a valid Kafka topic name' });
    expect((await status(collide))?.last_error).toContain(`collides with topic ${f.sluice.topic}`);
    expect((await status(other))?.attempts).toBe(0);
    expect((await status(fine))?.attempts).toBe(0);
    expect((await fetch(`${f.sluice.url}/healthz`)).status).toBe(200);
  }, 30_000);

  test('a topic the broker refuses (collides with another tenant\'s under ./_): dead with the broker\'s reason, never retried, nobody else charged', async () => {
    const base = `t${Bun.randomUUIDv7().replaceAll('-', '')}`;
    const first = await postEvent(f.sluice.url, { dedupe_key: 'dotted', payload: { n: 1 }, topic: `${base}.a` }, { 'X-Tenant-Id': 'one' });
    expect(first.status).toBe(202);
    const records = await readTopic(f.brokers, `${base}.a`, { expected: 1, graceMs: 0 });
    expect(records.map((r) => r.key)).toEqual(['one:dotted']);
    const clash = (await (await postEvent(f.sluice.url, { dedupe_key: 'clash', payload: { n: 2 }, topic: `${base}_a` }, { 'X-Tenant-Id': 'two' })).json()) as { id: string };
    const bystander = (await (await postEvent(f.sluice.url, { dedupe_key: 'by', payload: { n: 3 } }, { 'X-Tenant-Id': 'three' })).json()) as { id: string };
    await eventually(async () => (await status(clash.id))?.status === 'dead', 20_000, 'the colliding record dead');
    await eventually(async () => (await status(bystander.id))?.status === 'sent', 20_000, 'the bystander published');
    const dead = await status(clash.id);
    expect(dead?.attempts).toBe(1);
    expect(dead?.last_error).toContain(`topic ${base}_a refused by Kafka`);
    // The broker's own reason (its CreateTopics validation), not the metadata's UNKNOWN_TOPIC_OR_PARTITION.
    expect(dead?.last_error).toContain(`INVALID_TOPIC_EXCEPTION: Topic '${base}_a' collides with existing topic: ${base}.a`);
    expect((await status(bystander.id))?.attempts).toBe(0);
  }, 60_000);

  test('regression (outside tester): writes to names another tenant squatted under ./_ die without opening their tenant\'s breaker; its next writes are published at once', async () => {
    const base = `sq${Bun.randomUUIDv7().replaceAll('-', '')}`;
    // The squatter's writes create x_a, …; the victim's to x.a, … are refused by the broker, one
    // batch at a time (one more than the breaker's default threshold of 3).
    for (let i = 0; i < 4; i++) {
      const squat = (await (await postEvent(f.sluice.url, { dedupe_key: `squat-${i}`, payload: {}, topic: `${base}${i}_a` }, { 'X-Tenant-Id': 'squatter' })).json()) as { id: string };
      await eventually(async () => (await status(squat.id))?.status === 'sent', 20_000, 'the squatter\'s record sent');
    }
    for (let i = 0; i < 4; i++) {
      const victim = (await (await postEvent(f.sluice.url, { dedupe_key: `v-${i}`, payload: {}, topic: `${base}${i}.a` }, { 'X-Tenant-Id': 'victim' })).json()) as { id: string };
      await eventually(async () => (await status(victim.id))?.status === 'dead', 20_000, 'the victim\'s squatted record dead');
      expect((await status(victim.id))?.last_error).toContain(`collides with existing topic: ${base}${i}_a`);
    }
    const metrics = await (await fetch(`${f.sluice.url}/metrics`)).text();
    expect(/^sluice_breaker_state\{tenant="victim"\} 0$/m.test(metrics)).toBe(true);
    // Uncharged, but not free to repeat: a name refused within the last minute is refused before it
    // is sent, so more writes to it abort nobody's transaction.
    const aborted = (text: string): number => Number(/^sluice_kafka_transactions_total\{result="aborted"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    for (let i = 0; i < 3; i++) {
      const again = (await (await postEvent(f.sluice.url, { dedupe_key: `again-${i}`, payload: {}, topic: `${base}0.a` }, { 'X-Tenant-Id': 'victim' })).json()) as { id: string };
      await eventually(async () => (await status(again.id))?.status === 'dead', 20_000, 'the repeat to a refused name dead');
      expect((await status(again.id))?.last_error).toBe(`topic ${base}0.a refused by Kafka: INVALID_TOPIC_EXCEPTION: Topic '${base}0.a' collides with existing topic: ${base}0_a`);
    }
    expect(aborted(await (await fetch(`${f.sluice.url}/metrics`)).text())).toBe(aborted(metrics));
    // Before, its breaker was open here and this record waited for the probe a minute later.
    const good = (await (await postEvent(f.sluice.url, { dedupe_key: 'v-good', payload: {} }, { 'X-Tenant-Id': 'victim' })).json()) as { id: string };
    await eventually(async () => (await status(good.id))?.status === 'sent', 10_000, 'the victim\'s good record sent');
    expect((await status(good.id))?.attempts).toBe(0);
  }, 120_000);
});

async function count(sql: Sql): Promise<{ rows: number }> {
  const [r] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox`;
  return { rows: r?.n ?? -1 };
}
