import { describe, expect, test } from 'bun:test';
import { BackgroundLoop, type PassOutcome } from '../src/background-loop.ts';
import { ManualClock } from '../src/core/clock.ts';
import type { Logger } from '../src/log.ts';
import { quietLog } from './support/postgres.ts';

function recordingLog(): { log: Logger; lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push({ level, msg, ...(fields !== undefined ? { fields } : {}) });
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return { log, lines };
}

/** A pass the test releases by hand, so it can act while the pass is in flight. */
function gate(): { open: () => void; wait: Promise<void> } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, wait };
}

describe('BackgroundLoop on a manual clock', () => {
  test('runs a pass at start, then one per interval; `more` runs the next at once', async () => {
    const clock = new ManualClock();
    const at: number[] = [];
    const outcomes: PassOutcome[] = ['more', 'idle'];
    const loop = new BackgroundLoop({
      name: 'test', log: quietLog, clock, intervalMs: 1_000,
      pass: async () => {
        at.push(clock.now());
        return outcomes.shift() ?? 'idle';
      },
    });
    loop.start();
    await clock.advance(0);
    expect(at).toEqual([0, 0]);
    await clock.advance(999);
    expect(at).toEqual([0, 0]);
    await clock.advance(1);
    expect(at).toEqual([0, 0, 1_000]);
    await clock.advance(3_000);
    expect(at).toEqual([0, 0, 1_000, 2_000, 3_000, 4_000]);
    await loop.stop();
  });

  test('idleFirst waits one interval before the first pass', async () => {
    const clock = new ManualClock();
    let passes = 0;
    const loop = new BackgroundLoop({ name: 'test', log: quietLog, clock, intervalMs: 500, idleFirst: true, pass: async () => void passes++ });
    loop.start();
    await clock.advance(499);
    expect(passes).toBe(0);
    await clock.advance(1);
    expect(passes).toBe(1);
    await loop.stop();
  });

  test('wake ends the wait; a wake during a pass runs the next pass right after it', async () => {
    const clock = new ManualClock();
    let passes = 0;
    let held: ReturnType<typeof gate> | undefined;
    const loop = new BackgroundLoop({
      name: 'test', log: quietLog, clock, intervalMs: 60_000,
      pass: async () => {
        passes++;
        if (held !== undefined) await held.wait;
      },
    });
    loop.start();
    await clock.advance(0);
    expect(passes).toBe(1);
    loop.wake();
    await clock.advance(0);
    expect(passes).toBe(2);

    held = gate();
    loop.wake();
    await clock.advance(0);
    expect(passes).toBe(3);
    loop.wake();
    const g = held;
    held = undefined;
    g.open();
    await clock.advance(0);
    expect(passes).toBe(4);
    await clock.advance(59_999);
    expect(passes).toBe(4);
    await loop.stop();
  });

  test('stop waits for the pass in flight, then no pass runs again; safe to call twice', async () => {
    const clock = new ManualClock();
    const held = gate();
    let passes = 0;
    let finished = false;
    const loop = new BackgroundLoop({
      name: 'test', log: quietLog, clock, intervalMs: 10,
      pass: async (signal) => {
        passes++;
        await held.wait;
        finished = signal.aborted;
      },
    });
    loop.start();
    await clock.advance(0);
    let stopped = false;
    const stopping = loop.stop().then(() => {
      stopped = true;
    });
    await clock.advance(0);
    expect(stopped).toBe(false);
    held.open();
    await stopping;
    expect(finished).toBe(true);
    await loop.stop();
    await clock.advance(1_000);
    expect(passes).toBe(1);
    loop.start();
    await clock.advance(1_000);
    expect(passes).toBe(1);
  });

  test('a failing pass is logged the first and every tenth time, backs off up to the cap, and reports how long it has failed', async () => {
    const clock = new ManualClock();
    const { log, lines } = recordingLog();
    let failing = true;
    let passes = 0;
    const recovered: number[] = [];
    const loop = new BackgroundLoop({
      name: 'the test loop', log, clock, intervalMs: 1_000_000, maxBackoffMs: 800,
      pass: async () => {
        passes++;
        if (failing) throw new Error(`boom ${passes}`);
      },
      recovered: (n) => recovered.push(n),
    });
    loop.start();
    await clock.advance(0);
    expect(passes).toBe(1);
    expect(loop.lastError).toContain('boom 1');
    // Backoff of the first failure: 50..100 ms with jitter, so never before 50 ms, always by 100 ms.
    await clock.advance(49);
    expect(passes).toBe(1);
    await clock.advance(51);
    expect(passes).toBe(2);
    // Capped at 800 ms (400..800 with jitter): ten more failures in at most 8 s.
    await clock.advance(8_000);
    expect(passes).toBeGreaterThanOrEqual(12);
    expect(passes).toBeLessThanOrEqual(2 + 8_000 / 400);
    const warned = lines.filter((l) => l.level === 'warn').map((l) => l.fields?.failures);
    expect(warned).toEqual([1, 10, ...(passes >= 21 ? [20] : [])]);
    expect(lines[0]?.msg).toBe('the test loop failed; will retry');
    expect(loop.failingMs()).toBeGreaterThanOrEqual(8_000);
    // A wake during the backoff wait ends it.
    failing = false;
    loop.wake();
    await clock.advance(0);
    expect(loop.lastError).toBeUndefined();
    expect(loop.failingMs()).toBe(0);
    expect(recovered).toEqual([passes - 1]);
    await loop.stop();
  });

  test('`failed` decides the wait or stops the loop', async () => {
    const clock = new ManualClock();
    let passes = 0;
    const loop = new BackgroundLoop({
      name: 'test', log: quietLog, clock, intervalMs: 10,
      pass: async () => {
        passes++;
        throw new Error('fenced');
      },
      failed: (_err, failures) => (failures >= 2 ? 'stop' : 5),
    });
    loop.start();
    await clock.advance(1_000);
    expect(passes).toBe(2);
    await loop.stop();
  });
});
