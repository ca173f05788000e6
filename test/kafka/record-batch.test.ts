import { describe, expect, test } from 'bun:test';
import { createRecord, createRecordsBatch, crc32c, encodeRecords, readRecordsBatch, Reader, type MessageRecord } from '@platformatic/kafka';
import { prng, testSeed } from '../support/seed.ts';

// patches/@platformatic%2Fkafka@2.12.1.patch writes a batch's records into one buffer (encodeRecords)
// instead of a dozen small buffers per record. Kafka reads those bytes: they must be createRecord's.

/** createRecord's bytes for the batch: what the client wrote before the patch, and still writes otherwise. */
function reference(messages: MessageRecord[], first: bigint): Buffer {
  return Buffer.concat(messages.map((m, i) => createRecord(m, i, first).buffer));
}

function randomBatch(rnd: () => number, now: bigint): MessageRecord[] {
  // Random bytes at the ends, one random byte between: the copy is what is checked, not the content.
  const bytes = (max: number): Buffer => {
    const b = Buffer.alloc(Math.floor(rnd() * rnd() * max), Math.floor(rnd() * 256));
    for (let i = 0; i < Math.min(8, b.length); i++) b[i] = b[b.length - 1 - i] = Math.floor(rnd() * 256);
    return b;
  };
  // Lengths across the varint sizes: 0, < 64 (one byte), < 8,192 (two), above (three); record
  // counts too (offset deltas), with small records in the long batches.
  const long = rnd() < 0.1;
  const sized = (): Buffer => bytes((long ? [0, 40, 100] : [0, 40, 300, 9_000, 40_000])[Math.floor(rnd() * (long ? 3 : 5))] ?? 0);
  const n = long ? 70 + Math.floor(rnd() * 8_200) : 1 + Math.floor(rnd() * 40);
  return Array.from({ length: n }, (): MessageRecord => {
    const headers = new Map<Buffer, Buffer>();
    const h = Math.floor(rnd() * 8);
    for (let k = 0; k < h; k++) headers.set(bytes(30), (rnd() < 0.1 ? null : sized()) as Buffer);
    return {
      topic: 't',
      key: (rnd() < 0.1 ? undefined : sized()) as Buffer,
      value: (rnd() < 0.05 ? null : sized()) as Buffer,
      ...(rnd() < 0.1 ? {} : { headers }),
      timestamp: rnd() < 0.7 ? now : now + BigInt(Math.floor((rnd() - 0.5) * 2 ** 31)),
    };
  });
}

describe('the Kafka client writes a batch of records in one buffer (patched)', () => {
  test("encodeRecords gives createRecord's bytes for random batches: lengths of every varint size, null and empty fields, headers", () => {
    const rnd = prng(testSeed('record-batch'));
    let encoded = 0;
    let fellBack = 0;
    for (let round = 0; round < 200; round++) {
      const now = BigInt(Date.now());
      const messages = randomBatch(rnd, now);
      const first = messages[0]?.timestamp ?? now;
      const fast = encodeRecords(messages, first);
      const inRange = messages.every((m) => (m.timestamp ?? now) - first >= -(2n ** 30n) && (m.timestamp ?? now) - first < 2n ** 30n);
      if (!inRange) {
        expect(fast).toBeUndefined();
        fellBack++;
        continue;
      }
      expect(fast?.equals(reference(messages, first))).toBe(true);
      encoded++;
    }
    // Both paths were taken: the random timestamps fall outside 2^30 ms of the first now and then.
    expect(encoded).toBeGreaterThan(60);
    expect(fellBack).toBeGreaterThan(5);
  });

  test('anything but bytes with bigint timestamps is left to createRecord', () => {
    const now = BigInt(Date.now());
    const plain: MessageRecord = { topic: 't', key: Buffer.from('k'), value: Buffer.from('v'), timestamp: now };
    expect(encodeRecords([plain], now)?.equals(reference([plain], now))).toBe(true);
    const odd = [
      { ...plain, value: 'text' },
      { ...plain, key: 7 },
      { ...plain, headers: { a: Buffer.from('b') } },
      { ...plain, headers: new Map([['a', Buffer.from('b')]]) },
      { ...plain, timestamp: Number(now) },
      { ...plain, timestamp: now + 2n ** 30n },
    ] as unknown as MessageRecord[];
    for (const m of odd) expect(encodeRecords([plain, m], now)).toBeUndefined();
  });

  test('a produced batch reads back with its CRC, record count, timestamps, keys, values and headers', () => {
    const now = BigInt(Date.now());
    const headers = new Map<Buffer, Buffer>([
      [Buffer.from('tenant_id'), Buffer.from('acme')],
      [Buffer.from('traceparent'), null as unknown as Buffer],
    ]);
    const messages: MessageRecord[] = Array.from({ length: 300 }, (_, i) => ({
      topic: 't',
      partition: 0,
      key: Buffer.from(`acme:order-${i}`),
      value: Buffer.from(JSON.stringify({ i, text: 'é'.repeat(i) })),
      headers,
      timestamp: now + BigInt(i),
    }));
    const batch = createRecordsBatch(messages, { transactionalId: 'tx', producerId: 42n, producerEpoch: 3, compression: 'none' });
    const bytes = batch.buffer;
    const read = readRecordsBatch(Reader.from(bytes));
    // The CRC covers the bytes from the attributes (offset 21) to the end.
    expect(read.crc).toBe(crc32c(bytes.subarray(21)));
    expect(read.records.length).toBe(300);
    expect(read.firstTimestamp).toBe(now);
    expect(read.maxTimestamp).toBe(now + 299n);
    expect(read.producerId).toBe(42n);
    read.records.forEach((r, i) => {
      expect(r.offsetDelta).toBe(i);
      expect(r.timestampDelta).toBe(BigInt(i));
      expect(r.key?.toString()).toBe(`acme:order-${i}`);
      expect(JSON.parse(r.value?.toString() ?? 'null')).toEqual({ i, text: 'é'.repeat(i) });
      expect(r.headers.map(([k, v]) => [k?.toString(), v === null ? null : v.toString()])).toEqual([
        ['tenant_id', 'acme'],
        ['traceparent', null],
      ]);
    });
  });
});
