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
  test(`regression (outside test of issue 11, round 21): ${CONTROLS_SWEEP_FLOOR * 10} tenants each publishing once leave at most ~${CONTROLS_SWEEP_FLOOR * 2} buckets and breakers held`, () => {
    const clock = { now: 0 };
    const controls = controlsAt(clock);
    let most = 0;
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 10; i++) {
      const tenant = `t${i}`;
      expect(controls.breaker(tenant).allows()).toBe(true);
      controls.bucket(tenant).take(1);
      controls.breaker(tenant).success();
      clock.now += 1;
      most = Math.max(most, controls.held);
    }
    // Before, 200,000: a bucket and a breaker for every tenant ever seen.
    expect(most).toBeLessThanOrEqual(CONTROLS_SWEEP_FLOOR * 2 + 2);
  });

  test('a tenant whose quota or breaker is in play keeps its state through sweeps; one let go comes back as a fresh one', () => {
    const clock = { now: 0 };
    const controls = controlsAt(clock);
    for (let i = 0; i < 3; i++) controls.breaker('failing').failure();
    expect(controls.breaker('failing').state).toBe('open');
    controls.breaker('counted').failure();
    controls.bucket('spent').take(1_500);
    controls.bucket('idle').take(1);
    // Enough new tenants for several sweeps, within one millisecond: 'spent' has no time to refill.
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 4; i++) controls.bucket(`other${i}`).available();
    expect(controls.breaker('failing').state).toBe('open');
    expect(controls.bucket('spent').available()).toBe(500);
    // 'counted' had one failure: two more open it, as they would have without the sweeps.
    controls.breaker('counted').failure();
    expect(controls.breaker('counted').state).toBe('closed');
    controls.breaker('counted').failure();
    expect(controls.breaker('counted').state).toBe('open');
    // 1 ms later 'idle' is full again (1,000 tokens a second): whether kept or made anew, it offers the burst.
    clock.now += 1;
    for (let i = 0; i < CONTROLS_SWEEP_FLOOR * 4; i++) controls.bucket(`more${i}`).available();
    expect(controls.bucket('idle').available()).toBe(2_000);
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
        controls.bucket(t).take(n);
      } else if (op < 0.6) {
        m.breaker.failure();
        controls.breaker(t).failure();
      } else if (op < 0.8) {
        m.breaker.success();
        controls.breaker(t).success();
      }
      clock.now += Math.floor(random() * 40);
      expect({ t, step, tokens: controls.bucket(t).available(), breaker: controls.breaker(t).state }).toEqual({ t, step, tokens: m.bucket.available(), breaker: m.breaker.state });
    }
    expect(controls.held).toBeLessThan(4 * CONTROLS_SWEEP_FLOOR);
  });
});
