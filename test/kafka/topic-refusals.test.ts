import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Admin, Producer, type Connection } from '@platformatic/kafka';
import { topicRefusals } from '../../src/kafka/topic-refusals.ts';
import { testBrokers } from '../support/kafka.ts';

/**
 * Which topics the broker refuses for good, asked of the real broker. Under KRaft a metadata request
 * answers UNKNOWN_TOPIC_OR_PARTITION both for a colliding name and for a topic it is auto-creating,
 * so the first answer for any new topic looked like a refusal: CI saw an innocent tenant's record,
 * on a topic its own failed send had just auto-created, marked dead next to another tenant's poison.
 */
describe('topic refusals on a real broker', () => {
  let brokers: string[];
  let admin: Admin;
  let producer: Producer;
  let connection: Connection;
  const base = `refusals${Bun.randomUUIDv7().replaceAll('-', '')}`;

  beforeAll(async () => {
    brokers = await testBrokers();
    admin = new Admin({ clientId: 'test-refusals-admin', bootstrapBrokers: brokers });
    await admin.createTopics({ topics: [`${base}.a`], partitions: 1, replicas: 1 });
    producer = new Producer({ clientId: 'test-refusals', bootstrapBrokers: brokers });
    const [first] = (await producer.connectToBrokers(null)).values();
    if (first === undefined) throw new Error('no broker connection');
    connection = first;
  });

  afterAll(async () => {
    await producer?.close();
    await admin?.close();
  });

  test('regression: a topic nobody created yet is not refused (the request auto-creates it) and exists once the answer is in', async () => {
    const fresh = [0, 1, 2, 3, 4].map((i) => `${base}.fresh${i}`);
    const refusals = await topicRefusals(connection, fresh, 5_000);
    expect([...refusals.keys()]).toEqual([]);
    const metadata = await producer.metadata({ topics: fresh, forceUpdate: true });
    expect(fresh.filter((t) => (metadata.topics.get(t)?.partitionsCount ?? 0) > 0)).toEqual(fresh);
  });

  test('a name colliding under ./_ and an invalid name are refused, each with the broker\'s own reason; an existing topic and a new one asked alongside are not', async () => {
    const colliding = `${base}_a`;
    const invalid = `${base}.bad name`;
    const refusals = await topicRefusals(connection, [`${base}.a`, colliding, `${base}.new`, invalid], 5_000);
    expect([...refusals.keys()].sort()).toEqual([colliding, invalid].sort());
    expect(refusals.get(colliding)).toBe(`INVALID_TOPIC_EXCEPTION: Topic '${colliding}' collides with existing topic: ${base}.a`);
    expect(refusals.get(invalid)).toContain('INVALID_TOPIC_EXCEPTION');
  });

  test('asked again and again, a colliding name stays refused (the broker tried to create it each time)', async () => {
    for (let i = 0; i < 3; i++) {
      const refusals = await topicRefusals(connection, [`${base}_a`], 5_000);
      expect(refusals.get(`${base}_a`)).toContain('collides with existing topic');
    }
  });
});
