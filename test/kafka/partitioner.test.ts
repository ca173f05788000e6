import { describe, expect, test } from 'bun:test';
import { compatibilityPartitioner } from '@platformatic/kafka';
import { javaCompatiblePartitioner, murmur2 } from '../../src/kafka/partitioner.ts';

describe("records are partitioned as the Java client's default partitioner does", () => {
  test("murmur2 gives Kafka's own test vectors (UtilsTest.testMurmur2)", () => {
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    expect(cases.map(([key]) => murmur2(Buffer.from(key)))).toEqual(cases.map(([, hash]) => hash));
  });

  test("the same partition as the Kafka client's compatibilityPartitioner, for keys of every length and byte", () => {
    let seed = 7;
    const byte = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    const keys = Array.from({ length: 3_000 }, (_, i) => Buffer.from(Array.from({ length: i % 130 }, byte)));
    keys.push(Buffer.from('tenant-ß:order-✓'));
    const mismatched = keys.filter((key) => javaCompatiblePartitioner(undefined, key) !== compatibilityPartitioner(undefined as never, key));
    expect(mismatched).toEqual([]);
    expect(javaCompatiblePartitioner(undefined, undefined)).toBe(0);
  });
});
