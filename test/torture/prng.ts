import { prng } from '../support/seed.ts';

/** mulberry32 (test/support/seed.ts): a schedule printed with its seed can be run again. */
export const seededRandom = prng;

export function freshSeed(): number {
  return Math.floor(Math.random() * 0x7fffffff);
}
