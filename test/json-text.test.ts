import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { memberSpans, rawMember, scanEvent, topMembers } from '../src/json-text.ts';

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

/** Texts near JSON's edges: valid JSON with odd spacing, numbers and escapes, and those texts cut or altered. */
function jsonish(): fc.Arbitrary<string> {
  const ws = fc.constantFrom('', ' ', '\n', '\t', '\r', '\u00a0', '\ufeff', '\u000b');
  const number = fc.constantFrom('0', '-0', '1', '-12', '1.5', '1e5', '1E+5', '1e-5', '-0.0e0', '01', '1.', '.5', '+1', '1e', '-', '1ee5', '0x1', 'NaN', 'Infinity', '1e400', '9007199254740993');
  const str = fc.constantFrom('""', '"a"', '"\\u0041"', '"\\uD800"', '"\\u00g1"', '"\\x41"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\t"', '"\u0001"', '"é𝄞"', '"\\"', '"a\\\\"', "'a'");
  const literal = fc.constantFrom('true', 'false', 'null', 'tru', 'nul', 'True', 'undefined');
  const { value } = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, number, str, literal, tie('array'), tie('object')),
    array: fc.array(fc.tuple(ws, tie('value'), ws), { maxLength: 3 }).map((items) => `[${items.map(([a, v, b]) => `${a}${v}${b}`).join(',')}]`),
    object: fc
      .array(fc.tuple(fc.oneof(str, fc.constantFrom('"payload"', '"dedupe_key"', '"p\\u0061yload"', '"__proto__"')), ws, tie('value')), { maxLength: 3 })
      .map((members) => `{${members.map(([k, w, v]) => `${k}${w}:${w}${v}`).join(',')}}`),
  }));
  const mutated = fc.tuple(value, fc.nat(), fc.constantFrom('', ',', '}', ']', '"', ':', '\\', ' ', '{')).map(([text, at, insert]) => {
    const i = at % (text.length + 1);
    return `${text.slice(0, i)}${insert}${text.slice(i + (insert === '' ? 1 : 0))}`;
  });
  return fc.tuple(ws, fc.oneof(value, mutated), ws).map(([a, v, b]) => `${a}${v}${b}`);
}

/** topMembers' answer as a Map from name to its member's text, or undefined when it does not take the text. */
function members(text: string, max: number, names: readonly string[], spans = memberSpans(names)): Map<string, string> | undefined {
  if (!topMembers(text, max, names, spans)) return undefined;
  const found = new Map<string, string>();
  names.forEach((name, k) => {
    const start = spans[2 * k] as number;
    if (start >= 0) found.set(name, text.slice(start, spans[2 * k + 1]));
  });
  return found;
}

/** The names jsonish() writes without escapes, and `payload` (which it also writes escaped). */
const NAMES = ['payload', 'dedupe_key', '__proto__', '', 'a', 'é𝄞'];

describe('topMembers', () => {
  test(`takes only what JSON.parse takes as an object, within the depth, and gives each member's exact text (seed ${SEED})`, () => {
    let taken = 0;
    fc.assert(
      fc.property(jsonish(), fc.integer({ min: 1, max: 4 }), (text, max) => {
        const found = members(text, max, NAMES);
        if (found === undefined) return;
        taken++;
        const parsed = JSON.parse(text) as Record<string, unknown>;
        expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
        expect(scanEvent(text, max).tooDeep).toBe(false);
        expect(Object.keys(parsed).sort()).toEqual([...found.keys()].sort());
        for (const [key, raw] of found) {
          expect(JSON.stringify(JSON.parse(raw))).toBe(JSON.stringify(parsed[key]));
          expect(raw).toBe(rawMember(text, key) ?? '');
        }
      }),
      { seed: SEED, numRuns: 5000 },
    );
    // Not vacuous: texts are taken (most generated ones are not JSON at all).
    expect(taken).toBeGreaterThan(20);
  });

  test(`takes every JSON object within the depth whose names it is given unescaped, whatever its spacing and contents (seed ${SEED})`, () => {
    const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ');
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 6 }).chain((obj) => spaced(obj, ws).map((text) => ({ obj, text }))),
        fc.integer({ min: 1, max: 6 }),
        ({ obj, text }, max) => {
          const names = Object.keys(obj);
          const found = members(text, max, names);
          const unescaped = names.every((name) => JSON.stringify(name) === `"${name}"`);
          expect(found !== undefined).toBe(depth(obj) <= max && unescaped);
          for (const [key, raw] of found ?? []) expect(JSON.stringify(JSON.parse(raw))).toBe(JSON.stringify(obj[key]));
        },
      ),
      { seed: SEED, numRuns: 1000 },
    );
  });

  test('refuses what JSON.parse refuses, and nesting past the limit', () => {
    for (const text of ['{"a":1,}', '{"a":01}', '{"a":"\t"}', '{"a":1} x', '\ufeff{"a":1}', '{"a":[1,]}', '{"a":.5}', '{"a":"\\u12"}', '{a:1}', '[]', '{"a":{"b":{}}}']) {
      expect(members(text, 2, ['a'])).toBeUndefined();
    }
    expect(members(' {"a" : [ {"b":1e-5} ] , "a":true }\n', 3, ['a'])).toEqual(new Map([['a', 'true']]));
  });

  test('refuses a member it was not given, or given but written with escapes; forgets the last text it read', () => {
    expect(members('{"a":1,"b":2}', 2, ['a'])).toBeUndefined();
    expect(members('{"ab":1}', 2, ['a', 'abc'])).toBeUndefined();
    expect(members('{"\\u0061":1}', 2, ['a'])).toBeUndefined();
    const spans = memberSpans(['a', 'b']);
    expect(members('{"a":1,"b":[2]}', 2, ['a', 'b'], spans)).toEqual(new Map([['a', '1'], ['b', '[2]']]));
    expect(members('{"b":3}', 2, ['a', 'b'], spans)).toEqual(new Map([['b', '3']]));
    expect(members('{}', 1, ['a', 'b'], spans)).toEqual(new Map());
  });
});
