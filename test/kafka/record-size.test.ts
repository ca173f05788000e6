import { describe, expect, test } from 'bun:test';
import { Admin, createRecordsBatch, Producer } from '@platformatic/kafka';
import { errorCodes } from '../../src/kafka/errors.ts';
import { singleRecordBatchBytes, varintBytes } from '../../src/kafka/record-size.ts';
import { testBrokers } from '../support/kafka.ts';
import { prng, testSeed } from '../support/seed.ts';

type Message = { topic: string; key: Buffer | undefined; value: Buffer | undefined; headers: Map<Buffer, Buffer | undefined> };

/** Lengths around the varint boundaries (63/64, 8191/8192 as zigzag) as well as anywhere. */
function length(rand: () => number): number {
  const edges = [0, 1, 63, 64, 65, 8191, 8192, 8193];
  return rand() < 0.3 ? (edges[Math.floor(rand() * edges.length)] ?? 0) : Math.floor(rand() * 700);
}

/**
 * What a broker holds against max.message.bytes, computed without encoding: a verdict that buries
 * records no larger than it says must never be fooled (a review found a first, part-by-part rule that
 * called smaller batches larger, by the headers' count and length prefixes).
 */
describe('the size of a record batch of one record', () => {
  test('equals the client\'s own encoding, byte for byte, for random keys, values and headers (null ones too)', () => {
    const rand = prng(testSeed('record batch size'));
    const bytes = (n: number): Buffer => Buffer.alloc(n, 0x61);
    for (let i = 0; i < 2_000; i++) {
      const headers = new Map<Buffer, Buffer | undefined>();
      const count = rand() < 0.1 ? 70 : Math.floor(rand() * 8);
      for (let h = 0; h < count; h++) headers.set(bytes(length(rand) % 300), rand() < 0.2 ? undefined : bytes(length(rand)));
      const m: Message = { topic: 't', key: rand() < 0.1 ? undefined : bytes(length(rand)), value: rand() < 0.1 ? undefined : bytes(length(rand) * 3), headers };
      const encoded = createRecordsBatch([{ ...m, timestamp: BigInt(Date.now()) }] as never, {}) as unknown as { length: number };
      expect(singleRecordBatchBytes(m)).toBe(encoded.length);
    }
  });

  test('zigzag varint sizes at their boundaries', () => {
    expect([0, -1, 63, 64, -64, -65, 8191, 8192, 1_048_575, 1_048_576].map(varintBytes)).toEqual([1, 1, 1, 2, 1, 2, 2, 3, 3, 4]);
  });

  test('on a real broker, a topic of max.message.bytes 600 takes a batch of 600 bytes and refuses one of 601', async () => {
    const brokers = await testBrokers();
    const topic = `limit.${Bun.randomUUIDv7()}`;
    const admin = new Admin({ clientId: 'test-limit-admin', bootstrapBrokers: brokers });
    try {
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1, configs: [{ name: 'max.message.bytes', value: '600' }] });
    } finally {
      await admin.close();
    }
    const sized = (total: number): Message => {
      const m: Message = { topic, key: Buffer.from('k'), value: Buffer.alloc(0), headers: new Map() };
      m.value = Buffer.alloc(total - singleRecordBatchBytes(m), 0x61);
      // A longer value can take a longer length prefix: step back until the batch is the size asked.
      while (singleRecordBatchBytes(m) > total) m.value = m.value.subarray(1);
      return m;
    };
    const send = async (m: Message): Promise<string> => {
      const producer = new Producer({ clientId: 'test-limit', bootstrapBrokers: brokers, acks: -1, retries: 0 });
      try {
        await producer.send({ messages: [m as never] });
        return 'ok';
      } catch (err) {
        return errorCodes(err).includes('MESSAGE_TOO_LARGE') ? 'MESSAGE_TOO_LARGE' : String(err);
      } finally {
        await producer.close();
      }
    };
    const at = sized(600);
    const over = sized(601);
    expect([singleRecordBatchBytes(at), singleRecordBatchBytes(over)]).toEqual([600, 601]);
    expect(await send(at)).toBe('ok');
    expect(await send(over)).toBe('MESSAGE_TOO_LARGE');
  }, 30_000);
});
