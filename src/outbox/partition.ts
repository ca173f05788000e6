/**
 * partition = hash(tenant_id) mod P. FNV-1a over UTF-8 bytes: stable across processes, releases and
 * languages, so every instance agrees on which partition (and so which owner) a tenant belongs to.
 */
export function partitionOf(tenantId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(tenantId, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}
