import { describe, expect, test } from 'bun:test';
import { Producer } from '@platformatic/kafka';
import { errorCodes } from '../../src/kafka/errors.ts';
import { retryDelayMs, toKafkaMessages } from '../../src/processor/publisher.ts';
import { claimedRow } from '../support/claimed-text.ts';
import { testBrokers } from '../support/kafka.ts';

const row = (over: Parameters<typeof claimedRow>[0] = {}) => claimedRow({ payload: '{"b":1,"a":1.50,"name":"Zoë ✓"}', ...over });

/** Headers as the consumer reads them: name and value text, in record order. */
function headerText(headers: unknown): [string, string | null][] {
  return [...(headers as Map<Buffer, Buffer | undefined>)].map(([k, v]) => [k.toString(), v === undefined ? null : v.toString()]);
}

describe('the Kafka records of a batch', () => {
  test('key tenant:dedupe_key, the payload text byte for byte (never re-serialised), sluice headers', () => {
    const [m] = toKafkaMessages([row()]);
    expect(m?.topic).toBe('acme.events');
    expect(m?.key?.toString()).toBe('acme:order-1');
    expect(Buffer.compare(m?.value ?? Buffer.alloc(0), Buffer.from('{"b":1,"a":1.50,"name":"Zoë ✓"}'))).toBe(0);
    expect(headerText(m?.headers)).toEqual([
      ['tenant_id', 'acme'],
      ['dedupe_key', 'order-1'],
      ['outbox_id', '42'],
      ['ingested_at', '2026-11-25T10:00:00.123Z'],
      ['request_id', 'req-1'],
    ]);
  });

  test("the event's headers first; traceparent and replay when there; a header named like sluice's takes sluice's value in its place", () => {
    const [m] = toKafkaMessages([
      row({ headers: { source: 'app', tenant_id: 'forged', '7': 'digits' }, traceparent: '00-abc-def-01', replays: 2, request_id: null }),
    ]);
    // As a JS object spread had them: integer-like names first, then in insertion order.
    expect(headerText(m?.headers)).toEqual([
      ['7', 'digits'],
      ['source', 'app'],
      ['tenant_id', 'acme'],
      ['dedupe_key', 'order-1'],
      ['outbox_id', '42'],
      ['ingested_at', '2026-11-25T10:00:00.123Z'],
      ['traceparent', '00-abc-def-01'],
      ['replay', 'true'],
    ]);
  });

  test("regression: headers named like Object's own members (toString, constructor, __proto__) keep their names as bytes", () => {
    const headers = JSON.parse('{"toString":"a","constructor":"b","hasOwnProperty":"c","__proto__":"d"}') as Record<string, string>;
    const [m] = toKafkaMessages([row({ headers })]);
    expect(headerText(m?.headers).slice(0, 4)).toEqual([
      ['toString', 'a'],
      ['constructor', 'b'],
      ['hasOwnProperty', 'c'],
      ['__proto__', 'd'],
    ]);
  });

  test('rows of several tenants keep their own ids and keys', () => {
    const messages = toKafkaMessages([row(), row({ id: '43', tenant_id: 'zeta', dedupe_key: 'k' }), row({ id: '44', dedupe_key: 'order-2' })]);
    expect(messages.map((m) => m.key?.toString())).toEqual(['acme:order-1', 'zeta:k', 'acme:order-2']);
    expect(messages.map((m) => headerText(m.headers)[0])).toEqual([
      ['tenant_id', 'acme'],
      ['tenant_id', 'zeta'],
      ['tenant_id', 'acme'],
    ]);
  });
});

describe('the producer\'s retry delay', () => {
  test('CONCURRENT_TRANSACTIONS (the last commit\'s markers still being written) is retried after 1, 2, 4, 8 ms, then 10; other errors after 10', () => {
    const concurrent = Object.assign(new Error('addPartitionsToTransaction failed'), {
      errors: [Object.assign(new Error('Received response with error while executing API AddPartitionsToTxn(v3)'), { errors: [{ apiId: 'CONCURRENT_TRANSACTIONS' }] })],
    });
    expect([1, 2, 3, 4, 5, 6, 20].map((attempt) => retryDelayMs({}, 'addPartitionsToTransaction', attempt, 20, concurrent))).toEqual([1, 2, 4, 8, 10, 10, 10]);
    const leader = Object.assign(new Error('produce failed'), { errors: [{ apiId: 'NOT_LEADER_OR_FOLLOWER' }] });
    expect([1, 2, 5].map((attempt) => retryDelayMs({}, 'produce', attempt, 20, leader))).toEqual([10, 10, 10]);
    expect(retryDelayMs({}, 'produce', 1, 20, new Error('socket hang up'))).toBe(10);
  });

  test('back-to-back transactions on a real broker: the CONCURRENT_TRANSACTIONS the client meets is told apart, and retried within milliseconds', async () => {
    const brokers = await testBrokers();
    const retries: { codes: string[]; delay: number }[] = [];
    const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: 'sluice-test-retry-delay',
      bootstrapBrokers: brokers,
      idempotent: true,
      acks: -1,
      retries: 20,
      autocreateTopics: true,
      transactionalId: `sluice-test-retry-${Bun.randomUUIDv7()}`,
      retryDelay: (client, operation, attempt, limit, error) => {
        const delay = retryDelayMs(client, operation, attempt, limit, error);
        retries.push({ codes: errorCodes(error), delay });
        return delay;
      },
    });
    const topic = `retry-delay-${Bun.randomUUIDv7()}`;
    try {
      for (let n = 0; n < 60 && !retries.some((r) => r.codes.includes('CONCURRENT_TRANSACTIONS')); n++) {
        const tx = await producer.beginTransaction();
        await tx.send({ messages: [{ topic, key: Buffer.from(`k${n}`), value: Buffer.from('v') }] });
        await tx.commit();
      }
    } finally {
      await producer.close();
    }
    const concurrent = retries.filter((r) => r.codes.includes('CONCURRENT_TRANSACTIONS'));
    expect(concurrent.length).toBeGreaterThan(0);
    expect(concurrent[0]?.delay).toBe(1);
  }, 60_000);
});
