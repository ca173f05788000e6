import { describe, expect, test } from 'bun:test';
import { KNOWN_VARIABLES } from '../src/config.ts';
import { didYouMean, editDistance } from '../src/did-you-mean.ts';
import { prng } from './support/seed.ts';

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789';

/** One typo: a swap of neighbours, a lost, doubled or wrong character. */
function typo(name: string, random: () => number): string {
  const at = 7 + Math.floor(random() * (name.length - 7));
  const letter = LETTERS[Math.floor(random() * LETTERS.length)] ?? 'X';
  switch (Math.floor(random() * 4)) {
    case 0:
      return at + 1 < name.length ? name.slice(0, at) + name[at + 1] + name[at] + name.slice(at + 2) : name.slice(0, -1);
    case 1:
      return name.slice(0, at) + name.slice(at + 1);
    case 2:
      return name.slice(0, at) + letter + name.slice(at);
    default:
      return name.slice(0, at) + letter + name.slice(at + 1);
  }
}

describe('did you mean', () => {
  test('edit distance counts swaps of neighbours as one edit', () => {
    expect(editDistance('SLUICE_WRTIE_MODE', 'SLUICE_WRITE_MODE')).toBe(1);
    expect(editDistance('abc', 'abc')).toBe(0);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  for (const seed of [13, Math.floor(Math.random() * 2 ** 31)]) {
    test(`every setting with one random typo is traced back to a setting one edit away (seed ${seed})`, () => {
      console.log(`did-you-mean seed ${seed}`);
      const random = prng(seed);
      const sluiceNames = KNOWN_VARIABLES.filter((n) => n.startsWith('SLUICE_'));
      for (let round = 0; round < 20; round++) {
        for (const name of sluiceNames) {
          const wrong = typo(name, random);
          if (KNOWN_VARIABLES.includes(wrong)) continue;
          const guess = didYouMean(wrong, KNOWN_VARIABLES);
          expect({ wrong, close: guess !== undefined && editDistance(wrong, guess) <= 1 }).toEqual({ wrong, close: true });
        }
      }
    });
  }

  test('an unrelated name gets no suggestion', () => {
    for (const name of ['SLUICE_COLOUR', 'SLUICE_X', 'SLUICE_ENABLE_EVERYTHING_NOW']) expect(didYouMean(name, KNOWN_VARIABLES)).toBeUndefined();
  });
});
