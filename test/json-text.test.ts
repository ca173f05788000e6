import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { rawMember, scanEvent } from '../src/json-text.ts';

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

  test(`scanEvent's depth verdict agrees with the real depth, brackets inside strings not counted (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 1, max: 10 }), (value, max) => {
        expect(scanEvent(JSON.stringify(value), max).tooDeep).toBe(depth(value) > max);
      }),
      { seed: SEED, numRuns: 500 },
    );
    expect(scanEvent('{"s":"[[[[[[[[[[\\"[[["}', 1).tooDeep).toBe(false);
    expect(scanEvent('['.repeat(1_000_000), 64).tooDeep).toBe(true);
    expect(scanEvent('"unterminated [[[[', 1).tooDeep).toBe(false);
    expect(scanEvent('}}}}[[[', 2).tooDeep).toBe(false);
  });

  test(`scanEvent finds the payload rawMember finds, whatever the spacing, escapes and other members (seed ${SEED})`, () => {
    const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ');
    const key = fc.oneof(fc.constant('payload'), fc.constantFrom('payloa', 'payloads', 'dedupe_key', 'p'), fc.string({ unit: 'binary', maxLength: 9 }));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(key, fc.jsonValue({ maxDepth: 4 })), { maxLength: 6 }).chain((members) =>
          // Built by hand so that a name may repeat (the last one counts) and may be escaped.
          fc.array(fc.boolean(), { minLength: members.length, maxLength: members.length }).map((escape) =>
            `{${members.map(([k, v], i) => `${escape[i] === true ? `"${[...k].map((ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`,
          ),
        ).chain((text) => spaced(JSON.parse(text), ws).map((spacedText) => [text, spacedText])),
        (texts) => {
          for (const text of texts) {
            const scan = scanEvent(text, 100);
            expect(scan.tooDeep).toBe(false);
            if (!scan.tooDeep) expect(scan.payload).toBe(rawMember(text, 'payload'));
          }
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  test('scanEvent keeps what a parse would change, takes the last of repeated payloads, and finds an escaped name', () => {
    const payload = (text: string): string | undefined => {
      const scan = scanEvent(text, 64);
      return scan.tooDeep ? 'too deep' : scan.payload;
    };
    expect(payload('{"a":1,"payload" : {"big":1e400,"n":9007199254740993,"__proto__":{}} ,"payload":{"x" :1.0} , "b":[{"payload":2}]}')).toBe('{"x" :1.0}');
    expect(payload('{"p\\u0061yload":{"a":[1, 2]}\t}')).toBe('{"a":[1, 2]}');
    expect(payload('{"payload":{"s":"\\"}\\\\"}}')).toBe('{"s":"\\"}\\\\"}');
    expect(payload('{"payload":12 }')).toBe('12');
    expect(payload('{"nested":{"payload":{}}}')).toBeUndefined();
    expect(payload('{}')).toBeUndefined();
  });
});
