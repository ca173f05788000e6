import { expect, test } from 'bun:test';
import { partitionOf } from '../../src/outbox/partition.ts';

/** FNV-1a over the UTF-8 bytes, written out byte by byte: what partitionOf has always computed. */
function reference(text: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) hash = Math.imul((hash ^ byte) >>> 0, 0x01000193) >>> 0;
  return hash % partitions;
}

test('partitionOf is FNV-1a of the UTF-8 bytes mod P: published vectors, and ASCII or not, the same partition as byte by byte', () => {
  // FNV-1a 32-bit test vectors.
  expect(partitionOf('', 2 ** 32)).toBe(0x811c9dc5);
  expect(partitionOf('a', 2 ** 32)).toBe(0xe40c292c);
  expect(partitionOf('foobar', 2 ** 32)).toBe(0xbf9cf968);
  const tenants = ['acme', 'bench', 'tenant-0042', 'A.b_c-9', 'x'.repeat(128), '\u007f', 'café', '日本', 'a\u0080b', '😀', 'ascii then é'];
  for (const t of tenants) for (const p of [1, 7, 12, 16, 256]) expect(partitionOf(t, p)).toBe(reference(t, p));
});
