import { describe, expect, test } from 'bun:test';
import { createMetrics } from '../../src/metrics.ts';
import { Breaker } from '../../src/processor/breaker.ts';
import { CONTROLS_SWEEP_FLOOR, TenantControls } from '../../src/processor/tenant-controls.ts';
import { TokenBucket } from '../../src/processor/token-bucket.ts';
import { BUILT_IN_DEFAULTS, NO_TENANTS_FILE, Tenants } from '../../src/tenants.ts';
import { quietLog } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';

/** Open mode's built-in policy: quota 1,000/s with a burst of 2,000, breaker open after 3 failures in a row. */
function controlsAt(clock: { now: number }): TenantControls {
  return new TenantControls(new Tenants(NO_TENANTS_FILE, quietLog), createMetrics(), quietLog, () => clock.now);
}

describe('TenantControls: state held for the tenants in play, not every tenant seen', () => {
  test(`regression (outside test of issue 11, round 21): ${CONTROLS_SWEEP_FLOOR * 10} tenants each publishing once leave at most ${CONTROLS_SWEEP_FLOOR * 2} of them with state`, () => {
    const clock = { now: 0 };
    const controls = controlsAt(clock);
    let most = 0;
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 10; i++) {
      const tenant = `t${i}`;
      expect(controls.allows(tenant)).toBe(true);
      expect(controls.available(tenant)).toBe(2_000);
      controls.take(tenant, 1);
      controls.success(tenant);
      clock.now += 1;
      most = Math.max(most, controls.held);
    }
    // Before, 100,000: a bucket and a breaker for every tenant ever seen.
    expect(most).toBeLessThanOrEqual(CONTROLS_SWEEP_FLOOR * 2);
  });

  test('looking at tenants (may they publish, how many tokens) makes no state for them', () => {
    const controls = controlsAt({ now: 0 });
    for (let i = 0; i < 50_000; i++) {
      expect(controls.allows(`w${i}`)).toBe(true);
      expect(controls.available(`w${i}`)).toBe(2_000);
      expect(controls.breakerState(`w${i}`)).toBe('closed');
      controls.success(`w${i}`);
    }
    expect(controls.held).toBe(0);
    expect(controls.snapshot('w1')).toEqual({ breaker: 'closed', tokens: 2_000 });
  });

  test('a tenant whose quota or breaker is in play keeps its state through sweeps; one let go comes back as a fresh one', () => {
    const clock = { now: 0 };
    const controls = controlsAt(clock);
    for (let i = 0; i < 3; i++) controls.failure('failing');
    expect(controls.breakerState('failing')).toBe('open');
    controls.failure('counted');
    controls.take('spent', 1_500);
    controls.take('idle', 1);
    // Enough tenants spending for several sweeps, within one millisecond: 'spent' has no time to refill.
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 4; i++) controls.take(`other${i}`, 1);
    expect(controls.breakerState('failing')).toBe('open');
    expect(controls.allows('failing')).toBe(false);
    expect(controls.available('spent')).toBe(500);
    // 'counted' had one failure: two more open it, as they would have without the sweeps.
    controls.failure('counted');
    expect(controls.breakerState('counted')).toBe('closed');
    controls.failure('counted');
    expect(controls.breakerState('counted')).toBe('open');
    // 1 ms later 'idle' is full again (1,000 tokens a second): whether kept or made anew, it offers the burst.
    clock.now += 1;
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 4; i++) controls.take(`more${i}`, 1);
    expect(controls.available('idle')).toBe(2_000);
  });

  test('under random use, every tenant sees what a bucket and a breaker that were never let go would show', () => {
    const seed = testSeed('tenant controls sweep');
    const random = prng(seed);
    const clock = { now: 0 };
    const now = (): number => clock.now;
    const controls = controlsAt(clock);
    const { quota, breaker: policy } = BUILT_IN_DEFAULTS;
    const model = new Map<string, { bucket: TokenBucket; breaker: Breaker }>();
    const modelOf = (t: string): { bucket: TokenBucket; breaker: Breaker } => {
      let m = model.get(t);
      if (m === undefined) model.set(t, (m = { bucket: new TokenBucket(quota, now), breaker: new Breaker(policy, now) }));
      return m;
    };
    for (let step = 0; step < 40_000; step++) {
      // A few tenants in play among many passing through once, as in a backlog of many tenants.
      const t = random() < 0.5 ? `busy${Math.floor(random() * 20)}` : `once${step}`;
      const m = modelOf(t);
      const op = random();
      if (op < 0.4) {
        const n = Math.min(m.bucket.available(), 1 + Math.floor(random() * 400));
        m.bucket.take(n);
        controls.take(t, n);
      } else if (op < 0.6) {
        m.breaker.failure();
        controls.failure(t);
      } else if (op < 0.8) {
        m.breaker.success();
        controls.success(t);
      }
      clock.now += Math.floor(random() * 40);
      expect({ t, step, tokens: controls.available(t), breaker: controls.breakerState(t), allows: controls.allows(t) }).toEqual({
        t,
        step,
        tokens: m.bucket.available(),
        breaker: m.breaker.state,
        allows: m.breaker.allows(),
      });
    }
    expect(controls.held).toBeLessThan(2 * CONTROLS_SWEEP_FLOOR);
  });
});
