import { describe, expect, test } from 'bun:test';
import { Breaker, type BreakerTransition } from '../../src/processor/breaker.ts';

function setup(threshold = 3, resetMs = 1_000) {
  let now = 0;
  const transitions: BreakerTransition[] = [];
  const breaker = new Breaker({ failureThreshold: threshold, resetMs }, () => now, (t) => transitions.push(t));
  return { breaker, transitions, step: (ms: number) => (now += ms) };
}

describe('breaker state machine', () => {
  test('opens after failure_threshold consecutive failures, not before', () => {
    const { breaker, transitions } = setup(3);
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe('closed');
    expect(breaker.allows()).toBe(true);
    breaker.failure();
    expect(breaker.state).toBe('open');
    expect(breaker.allows()).toBe(false);
    expect(transitions.map((t) => `${t.from}>${t.to}`)).toEqual(['closed>open']);
  });

  test('a success in between resets the count', () => {
    const { breaker } = setup(3);
    breaker.failure();
    breaker.failure();
    breaker.success();
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe('closed');
  });

  test('half-open after reset_ms; a good probe closes it', () => {
    const { breaker, step, transitions } = setup(1, 1_000);
    breaker.failure();
    step(999);
    expect(breaker.state).toBe('open');
    step(1);
    expect(breaker.state).toBe('half_open');
    expect(breaker.allows()).toBe(true);
    breaker.success();
    expect(breaker.state).toBe('closed');
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half_open', 'closed']);
  });

  test('a failed probe opens it again for another reset_ms', () => {
    const { breaker, step } = setup(2, 1_000);
    breaker.failure();
    breaker.failure();
    step(1_000);
    expect(breaker.state).toBe('half_open');
    breaker.failure();
    expect(breaker.state).toBe('open');
    step(999);
    expect(breaker.allows()).toBe(false);
    step(1);
    expect(breaker.allows()).toBe(true);
  });

  test('failures while open are not counted; an operator reset closes it at once', () => {
    const { breaker, transitions } = setup(1, 60_000);
    breaker.failure();
    breaker.failure();
    expect(transitions.length).toBe(1);
    breaker.reset();
    expect(breaker.state).toBe('closed');
    expect(transitions.at(-1)).toEqual({ from: 'open', to: 'closed', reason: 'reset by an operator' });
  });
});
