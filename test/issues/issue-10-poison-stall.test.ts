import { describe, expect, test } from 'bun:test';
import { Admin } from '@platformatic/kafka';
import { readTopic } from '../support/kafka.ts';
import { eventually, postEvent, sluiceFixture } from '../support/sluice.ts';

/**
 * Issue 10 (outside tester): one NDJSON request of topics colliding with existing ones under the ./_
 * rule (ingest cannot know topics it never saw) stalled every other tenant of the partition for
 * minutes: the failed batch was split per (tenant, topic), each group its own aborted transaction
 * and its own metadata request, the innocent tenant's group behind all of them. Asserted on the
 * number of aborted transactions, not on wall time: the innocent record must be out after a few,
 * however many poison topics there are.
 */
describe('issue 10: a tenant\'s many poison topics cost another tenant of its partition a bounded delay', () => {
  const POISON = 200;
  const f = sluiceFixture({ SLUICE_PARTITIONS: '1', SLUICE_RETRY_BASE_MS: '100' });

  async function aborted(): Promise<number> {
    const text = await (await fetch(`${f.sluice.url}/metrics`)).text();
    const m = /^sluice_kafka_transactions_total\{result="aborted"\} (\d+)$/m.exec(text);
    return m === null ? 0 : Number(m[1]);
  }

  /** Sent yet? A bystander's row that went dead fails at once, with its reason (CI once waited out a dead one). */
  async function sent(tenant: string): Promise<boolean> {
    const rows = await statuses(tenant);
    const dead = rows.find((r) => r.status === 'dead');
    if (dead !== undefined) throw new Error(`${tenant}'s record on ${dead.topic} is dead: ${dead.last_error}`);
    return rows.length > 0 && rows.every((r) => r.status === 'sent');
  }

  async function statuses(tenant: string): Promise<{ status: string; attempts: number; last_error: string | null; topic: string }[]> {
    return f.db.sql<{ status: string; attempts: number; last_error: string | null; topic: string }[]>`
      SELECT status, attempts, last_error, topic FROM outbox WHERE tenant_id = ${tenant} ORDER BY id`;
  }

  test(`${POISON} topics colliding under ./_ in one request: the other tenant's record is in Kafka after at most 3 aborted transactions; every poison row dead once`, async () => {
    const base = `stall${Bun.randomUUIDv7().replaceAll('-', '')}`;
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: f.brokers });
    try {
      await admin.createTopics({ topics: Array.from({ length: POISON }, (_, i) => `${base}.t${i}`), partitions: 1, replicas: 1 });
    } finally {
      await admin.close();
    }
    const abortedBefore = await aborted();
    const ndjson = Array.from({ length: POISON }, (_, i) => JSON.stringify({ topic: `${base}_t${i}`, payload: {} })).join('\n');
    const poison = await fetch(`${f.sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'poison' },
      body: ndjson,
    });
    expect(poison.status).toBe(202);
    expect(((await poison.json()) as { accepted: number }).accepted).toBe(POISON);
    const good = await postEvent(f.sluice.url, { dedupe_key: 'innocent', payload: { n: 1 } }, { 'X-Tenant-Id': 'good' });
    expect(good.status).toBe(202);

    await eventually(() => sent('good'), 60_000, 'the good tenant\'s record sent');
    const abortedWhenGoodSent = (await aborted()) - abortedBefore;
    const records = await readTopic(f.brokers, f.sluice.topic, { expected: 1, graceMs: 0 });
    expect(records.map((r) => r.key)).toEqual(['good:innocent']);
    expect((await statuses('good'))[0]?.attempts).toBe(0);
    expect(abortedWhenGoodSent).toBeLessThanOrEqual(3);

    await eventually(async () => (await statuses('poison')).every((r) => r.status === 'dead'), 60_000, 'every poison row dead');
    const dead = await statuses('poison');
    expect(dead).toHaveLength(POISON);
    for (const r of dead) {
      expect(r.attempts).toBe(1);
      expect(r.last_error).toContain(`topic ${r.topic} refused by Kafka`);
    }
    // Confirmed together: the poison cost a few transactions in all, not one per topic.
    expect((await aborted()) - abortedBefore).toBeLessThanOrEqual(3);
  }, 120_000);

  test('one request to 100 topics nobody created yet: a few transactions, not one per topic; a bystander is not held up', async () => {
    const TOPICS = 100;
    const base = `fresh${Bun.randomUUIDv7().replaceAll('-', '')}`;
    const abortedBefore = await aborted();
    const ndjson = Array.from({ length: TOPICS }, (_, i) => JSON.stringify({ topic: `${base}.t${i}`, payload: { i } })).join('\n');
    const res = await fetch(`${f.sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'fresh' },
      body: ndjson,
    });
    expect(res.status).toBe(202);
    expect((await postEvent(f.sluice.url, { dedupe_key: 'fresh-bystander', payload: {} }, { 'X-Tenant-Id': 'bystander' })).status).toBe(202);
    await eventually(() => sent('fresh'), 60_000, 'every fresh-topic record sent');
    await eventually(() => sent('bystander'), 60_000, 'the bystander\'s record sent');
    expect((await aborted()) - abortedBefore).toBeLessThanOrEqual(3);
    expect((await statuses('fresh')).every((r) => r.attempts === 0)).toBe(true);
    const records = await readTopic(f.brokers, `${base}.t${TOPICS - 1}`, { expected: 1, graceMs: 0 });
    expect(records.map((r) => r.key)).toHaveLength(1);
  }, 120_000);

  test('a tenant whose records every one of its topics refuses for good: 3 dead until its breaker opens, the rest wait uncharged; the other tenant publishes', async () => {
    const TOPICS = 20;
    const base = `tiny${Bun.randomUUIDv7().replaceAll('-', '')}`;
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: f.brokers });
    try {
      const configs = [{ name: 'max.message.bytes', value: '600' }];
      await admin.createTopics({ topics: Array.from({ length: TOPICS }, (_, i) => `${base}.t${i}`), partitions: 1, replicas: 1, configs });
    } finally {
      await admin.close();
    }
    const abortedBefore = await aborted();
    const big = { blob: 'x'.repeat(2_000) };
    const ndjson = Array.from({ length: TOPICS }, (_, i) => JSON.stringify({ topic: `${base}.t${i}`, payload: big })).join('\n');
    const res = await fetch(`${f.sluice.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-ndjson', 'X-Tenant-Id': 'oversize' },
      body: ndjson,
    });
    expect(res.status).toBe(202);
    expect((await postEvent(f.sluice.url, { dedupe_key: 'bystander', payload: {} }, { 'X-Tenant-Id': 'bystander' })).status).toBe(202);
    await eventually(() => sent('bystander'), 60_000, 'the bystander\'s record sent');
    // The batch, the tenant's rows alone, then one per topic until the breaker opens (3).
    expect((await aborted()) - abortedBefore).toBeLessThanOrEqual(5);
    await eventually(async () => /^sluice_breaker_state\{tenant="oversize"\} 1$/m.test(await (await fetch(`${f.sluice.url}/metrics`)).text()), 30_000, 'the oversize tenant\'s breaker open');
    // The partition is one task: a record published after the breaker opened means the step that opened it is over.
    expect((await postEvent(f.sluice.url, { dedupe_key: 'after', payload: {} }, { 'X-Tenant-Id': 'bystander' })).status).toBe(202);
    await eventually(() => sent('bystander'), 30_000, 'the bystander\'s next record sent');
    const rows = await statuses('oversize');
    expect(rows.filter((r) => r.status === 'dead')).toHaveLength(3);
    expect(rows.filter((r) => r.attempts === 0 && r.status === 'pending')).toHaveLength(TOPICS - 3);
    expect(rows.find((r) => r.status === 'dead')?.last_error).toContain('MESSAGE_TOO_LARGE');
    expect((await aborted()) - abortedBefore).toBeLessThanOrEqual(5);
  }, 120_000);
});
