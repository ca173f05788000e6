import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { nestsDeeperThan, rawMember } from '../src/json-text.ts';

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** JSON text of `value` with random whitespace between tokens (what a client may send). */
function spaced(value: unknown, ws: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const tokens = JSON.stringify(value).split(/("(?:[^"\\]|\\.)*"|[{}[\],:])/).filter((t) => t.length > 0);
  return fc.array(ws, { minLength: tokens.length + 1, maxLength: tokens.length + 1 }).map((gaps) => gaps.map((g, i) => g + (tokens[i] ?? '')).join(''));
}

function depth(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depth));
  if (typeof v === 'object' && v !== null) return 1 + Math.max(0, ...Object.values(v).map(depth));
  return 0;
}

describe('json-text', () => {
  test(`rawMember returns a member's exact text, whatever the spacing and escapes (seed ${SEED})`, () => {
    const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ');
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 4 }), { minKeys: 1, maxKeys: 6 }).chain((obj) =>
          spaced(obj, ws).map((text) => ({ obj, text })),
        ),
        ({ obj, text }) => {
          for (const [key, value] of Object.entries(obj)) {
            const raw = rawMember(text, key);
            expect(raw).toBeDefined();
            expect(JSON.stringify(JSON.parse(raw ?? 'null'))).toBe(JSON.stringify(value));
            // Exact text: what JSON.stringify would write, once the spacing between its tokens is gone.
            expect((raw ?? '').replace(/("(?:[^"\\]|\\.)*")|\s+/g, (m, str: string | undefined) => str ?? '')).toBe(JSON.stringify(value));
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  test('rawMember keeps what a parse would change, takes the last of repeated names, and finds escaped names', () => {
    const text = '{"a":1,"payload" : {"big":1e400,"n":9007199254740993,"__proto__":{}} ,"payload":{"x" :1.0},"p\\u0061y":[ 1 ]}';
    expect(rawMember(text, 'payload')).toBe('{"x" :1.0}');
    expect(rawMember(text, 'pay')).toBe('[ 1 ]');
    expect(rawMember(text, 'a')).toBe('1');
    expect(rawMember(text, 'missing')).toBeUndefined();
    expect(rawMember('[1]', 'a')).toBeUndefined();
    expect(rawMember('{"payload":{"s":"\\"}\\\\"}}', 'payload')).toBe('{"s":"\\"}\\\\"}');
  });

  test(`nestsDeeperThan agrees with the real depth, brackets inside strings not counted (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 1, max: 10 }), (value, max) => {
        expect(nestsDeeperThan(JSON.stringify(value), max)).toBe(depth(value) > max);
      }),
      { seed: SEED, numRuns: 500 },
    );
    expect(nestsDeeperThan('{"s":"[[[[[[[[[[\\"[[["}', 1)).toBe(false);
    expect(nestsDeeperThan('['.repeat(1_000_000), 64)).toBe(true);
    expect(nestsDeeperThan('"unterminated [[[[', 1)).toBe(false);
  });
});
