/**
 * The Java client's default partitioner for keyed records: murmur2 of the key bytes, made positive,
 * modulo the partition count (the client applies the modulo). The same function as the Kafka
 * client's `compatibilityPartitioner`, whose murmur2 runs on BigInts that grow with the key (3 % of
 * sluice's CPU in the end-to-end profile); this one runs on 32-bit integers.
 */
export function javaCompatiblePartitioner(_message: unknown, key: Buffer | undefined): number {
  return key === undefined ? 0 : murmur2(key) & 0x7fffffff;
}

const M = 0x5bd1e995;
const SEED = 0x9747b28c;

/** Kafka's `Utils.murmur2` (org.apache.kafka.common.utils), as a signed 32-bit integer. */
export function murmur2(data: Buffer): number {
  const length = data.length;
  const whole = length & ~3;
  let h = SEED ^ length;
  for (let i = 0; i < whole; i += 4) {
    let k = data.readInt32LE(i);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const rest = length & 3;
  if (rest > 0) {
    if (rest === 3) h ^= (data[whole + 2] ?? 0) << 16;
    if (rest >= 2) h ^= (data[whole + 1] ?? 0) << 8;
    h ^= data[whole] ?? 0;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}
