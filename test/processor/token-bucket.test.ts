import { describe, expect, test } from 'bun:test';
import { TokenBucket } from '../../src/processor/token-bucket.ts';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, step: (ms: number) => (now += ms) };
}

describe('token bucket', () => {
  test('starts full at burst, spends whole tokens, refills at rate', () => {
    const c = clock();
    const b = new TokenBucket({ rate: 10, burst: 20 }, c.now);
    expect(b.available()).toBe(20);
    b.take(20);
    expect(b.available()).toBe(0);
    c.step(250);
    expect(b.available()).toBe(2);
    c.step(99);
    expect(b.available()).toBe(3);
  });

  test('never holds more than burst after a quiet spell', () => {
    const c = clock();
    const b = new TokenBucket({ rate: 1000, burst: 50 }, c.now);
    b.take(50);
    c.step(3_600_000);
    expect(b.available()).toBe(50);
  });

  test('a clock stepping back neither mints nor burns tokens', () => {
    const c = clock();
    const b = new TokenBucket({ rate: 10, burst: 10 }, c.now);
    b.take(5);
    c.step(-10_000);
    expect(b.available()).toBe(5);
    c.step(100);
    expect(b.available()).toBe(6);
  });

  test('a new quota keeps saved tokens up to the new burst', () => {
    const c = clock();
    const b = new TokenBucket({ rate: 10, burst: 100 }, c.now);
    b.configure({ rate: 1, burst: 30 });
    expect(b.available()).toBe(30);
    b.take(30);
    c.step(2_000);
    expect(b.available()).toBe(2);
  });
});
