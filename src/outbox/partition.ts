/**
 * partition = hash(tenant_id) mod P. FNV-1a over UTF-8 bytes: stable across processes, releases and
 * languages, so every instance agrees on which partition (and so which owner) a tenant belongs to.
 */
export function partitionOf(tenantId: string, partitions: number): number {
  // Tenant ids are ASCII, whose characters are their UTF-8 bytes: hashed without encoding them (the
  // forwarder asks twice an event, and the Buffer cost ~15 times the hash).
  let hash = 0x811c9dc5;
  for (let i = 0; i < tenantId.length; i++) {
    const c = tenantId.charCodeAt(i);
    if (c >= 0x80) return utf8Hash(tenantId) % partitions;
    hash = Math.imul(hash ^ c, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

function utf8Hash(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
