import { describe, expect, test } from 'bun:test';
import { allocate, roundRobin } from '../../src/processor/fair-share.ts';
import { backoffMs } from '../../src/core/backoff.ts';

describe('round-robin and allocation', () => {
  test('round-robin starts after the tenant served last, wrapping around', () => {
    expect(roundRobin(['c', 'a', 'b'], undefined)).toEqual(['a', 'b', 'c']);
    expect(roundRobin(['c', 'a', 'b'], 'a')).toEqual(['b', 'c', 'a']);
    expect(roundRobin(['c', 'a', 'b'], 'c')).toEqual(['a', 'b', 'c']);
    expect(roundRobin(['a', 'c'], 'b')).toEqual(['c', 'a']);
  });

  test('splits a batch evenly; a tenant with few tokens leaves its share to the others', () => {
    const grants = allocate(
      [
        { tenant: 'loud', tokens: 10_000 },
        { tenant: 'quiet', tokens: 3 },
        { tenant: 'mid', tokens: 10_000 },
      ],
      500,
    );
    expect(grants.get('quiet')).toBe(3);
    expect((grants.get('loud') ?? 0) + (grants.get('mid') ?? 0)).toBe(497);
    expect(Math.abs((grants.get('loud') ?? 0) - (grants.get('mid') ?? 0))).toBeLessThanOrEqual(1);
  });

  test('tenants without a whole token get nothing; more tenants than rows get one each, in order', () => {
    expect(allocate([{ tenant: 'a', tokens: 0 }], 10).size).toBe(0);
    const grants = allocate(
      ['d', 'e', 'a', 'b'].map((tenant) => ({ tenant, tokens: 5 })),
      3,
    );
    expect([...grants]).toEqual([
      ['d', 1],
      ['e', 1],
      ['a', 1],
    ]);
  });

  test('never grants more than the batch or a tenant\'s tokens', () => {
    for (let i = 0; i < 200; i++) {
      const claimants = Array.from({ length: 1 + (i % 7) }, (_, j) => ({ tenant: `t${j}`, tokens: (i * 31 + j * 17) % 50 }));
      const budget = 1 + ((i * 13) % 60);
      const grants = allocate(claimants, budget);
      const total = [...grants.values()].reduce((a, b) => a + b, 0);
      expect(total).toBeLessThanOrEqual(budget);
      for (const c of claimants) expect(grants.get(c.tenant) ?? 0).toBeLessThanOrEqual(c.tokens);
      const wanted = claimants.reduce((a, c) => a + c.tokens, 0);
      expect(total).toBe(Math.min(budget, wanted));
    }
  });
});

describe('retry backoff', () => {
  test('doubles per attempt up to the cap, with half of it random', () => {
    expect(backoffMs(1, 100, 10_000, () => 0)).toBe(50);
    expect(backoffMs(1, 100, 10_000, () => 1)).toBe(100);
    expect(backoffMs(4, 100, 10_000, () => 0.5)).toBe(600);
    expect(backoffMs(30, 100, 10_000, () => 1)).toBe(10_000);
  });
});
