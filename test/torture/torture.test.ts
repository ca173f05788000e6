import { expect, test } from 'bun:test';
import { freshSeed } from './prng.ts';
import { FAULTS, runTorture, type TortureReport } from './torture.ts';

// The bounded torture run of `bun run test`: one fixed seed (the same schedule every time) and one
// fresh seed (printed, so a failure can be repeated with `bun run torture --seed S`). The long run
// and its figures are in the README.
const FAULT_MS = 30_000;

function summary(r: TortureReport): string {
  const c = r.check;
  return JSON.stringify({
    seed: r.seed,
    faults: r.faults,
    kinds: r.kinds,
    acknowledged: c.acknowledged,
    lost: c.lost.length,
    duplicated: c.duplicated.length,
    out_of_order: c.outOfOrder.length,
    phantom: c.phantom.length,
    longest_recovery: r.longestRecovery,
  });
}

for (const [name, seed] of [
  ['fixed', 20261127],
  ['fresh', freshSeed()],
] as const) {
  test(`torture, ${name} seed ${seed}: faults of every kind, then every acknowledged write in Kafka once and in order`, async () => {
    console.error(`torture seed ${seed}: repeat with bun run torture --minutes ${FAULT_MS / 60_000} --seed ${seed}`);
    const report = await runTorture({ durationMs: FAULT_MS, seed, recoveryBoundMs: 60_000, tenantsPerMode: 3 });
    console.error(`torture: ${summary(report)}`);
    expect(report.violations).toEqual([]);
    expect(report.check.acknowledged.sync).toBeGreaterThan(0);
    expect(report.check.acknowledged.fast_ack).toBeGreaterThan(0);
    expect(report.check.acknowledged.background).toBeGreaterThan(0);
    expect(Object.keys(report.kinds).sort()).toEqual([...FAULTS].sort());
    expect(report.journalVerify.ok).toBe(true);
  }, FAULT_MS + 300_000);
}
