/**
 * Seeds for randomized tests: SLUICE_TEST_SEED replays a run; otherwise a fresh one. Every test that
 * draws from it prints the seed first, so a failure can be replayed exactly.
 */
export function testSeed(name: string): number {
  const fromEnv = process.env.SLUICE_TEST_SEED;
  const seed = fromEnv !== undefined && fromEnv.length > 0 ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.error(`${name}: seed ${seed} (replay with SLUICE_TEST_SEED=${seed})`);
  return seed;
}

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
