import { expect, test } from 'bun:test';
import { LIMITS, NAMESPACE_SYNTAX, nodeIdFromHost, nodeIdSchema, tenantIdSchema } from '../../src/core/identifiers.ts';

test('a node id is 1-64 characters of A-Z a-z 0-9 . _ -; one made from a host name always passes', () => {
  expect(nodeIdSchema.safeParse('edge-1.eu_west').success).toBe(true);
  expect(nodeIdSchema.safeParse('').success).toBe(false);
  expect(nodeIdSchema.safeParse('a/b').success).toBe(false);
  expect(nodeIdSchema.safeParse('n'.repeat(65)).success).toBe(false);
  for (const host of ['box', 'my host:1', 'ü'.repeat(100), '']) {
    expect(nodeIdSchema.safeParse(nodeIdFromHost(host)).success).toBe(true);
  }
  expect(nodeIdFromHost('my host:1')).toBe('my-host-1');
  expect(nodeIdFromHost('')).toBe('node');
});

test("a namespace's tenant part follows the tenant id rule, length included", () => {
  const tenant = 't'.repeat(LIMITS.tenantId);
  expect(tenantIdSchema.safeParse(tenant).success).toBe(true);
  expect(NAMESPACE_SYNTAX.test(`${tenant}:orders`)).toBe(true);
  expect(tenantIdSchema.safeParse(`${tenant}t`).success).toBe(false);
  expect(NAMESPACE_SYNTAX.test(`${tenant}t:orders`)).toBe(false);
  expect(NAMESPACE_SYNTAX.test('acme:orders/eu west')).toBe(true);
  expect(NAMESPACE_SYNTAX.test(':orders')).toBe(false);
  expect(NAMESPACE_SYNTAX.test('acme:')).toBe(false);
  expect(NAMESPACE_SYNTAX.test('a/b:orders')).toBe(false);
  expect(NAMESPACE_SYNTAX.test('acme:ord\u0000ers')).toBe(false);
  expect(NAMESPACE_SYNTAX.test('acme:ord\u0085ers')).toBe(false);
});
