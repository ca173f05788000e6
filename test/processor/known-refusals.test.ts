import { describe, expect, test } from 'bun:test';
import { ManualClock } from '../../src/core/clock.ts';
import { KNOWN_REFUSAL_MS, KnownRefusals } from '../../src/processor/known-refusals.ts';

describe('refusals Kafka confirmed lately', () => {
  test('a refused name refuses every record for it, with the broker\'s reason, until KNOWN_REFUSAL_MS passed', async () => {
    const clock = new ManualClock(1_000);
    const known = new KnownRefusals(clock);
    known.refusedName('x_a', 'INVALID_TOPIC_EXCEPTION: Topic \'x_a\' collides with existing topic: x.a');
    expect(known.reason('x_a', () => 1)).toBe('topic x_a refused by Kafka: INVALID_TOPIC_EXCEPTION: Topic \'x_a\' collides with existing topic: x.a');
    expect(known.reason('x.b', () => 1)).toBeUndefined();
    await clock.advance(KNOWN_REFUSAL_MS - 1);
    expect(known.reason('x_a', () => 1)).toBeDefined();
    await clock.advance(1);
    expect(known.reason('x_a', () => 1)).toBeUndefined();
  });

  test('a size limit refuses only records whose batch alone is over it', () => {
    const known = new KnownRefusals(new ManualClock());
    known.sizeLimit('tiny', 600);
    expect([known.limit('tiny'), known.limit('other')]).toEqual([600, undefined]);
    expect(known.reason('tiny', () => 600)).toBeUndefined();
    expect(known.reason('tiny', () => 601)).toBe('MESSAGE_TOO_LARGE: alone, its record batch is over topic tiny\'s max.message.bytes of 600 (not sent: one over it was refused alone)');
  });

  test('at most 1,000 topics are remembered, the oldest forgotten first', () => {
    const known = new KnownRefusals(new ManualClock());
    for (let i = 0; i <= 1_000; i++) known.refusedName(`t${i}`, 'r');
    expect(known.reason('t0', () => 1)).toBeUndefined();
    expect(known.reason('t1', () => 1)).toBeDefined();
    expect(known.reason('t1000', () => 1)).toBeDefined();
  });
});
