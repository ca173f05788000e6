import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { formatEntry } from '../../src/journal/entry.ts';
import { parseEntry, parseOwnEntry } from '../../src/journal/reader.ts';

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.stringMatching(/^[a-z0-9-]{1,12}$/));
const entry = fc.record(
  {
    seq: fc.oneof(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    ts: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    tenant_id: text,
    dedupe_key: text,
    topic: text,
    request_id: text,
    headers: fc.oneof(fc.constant({}), fc.dictionary(text, text, { maxKeys: 3 })),
    payload: fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ v, a: [v, { b: '}]"\\' }] })),
      fc.constantFrom('{\n"a":1}', '{ "big" : 1e400 }', '{"s":"\\"}{"}'),
    ),
    traceparent: text,
  },
  { requiredKeys: ['seq', 'ts', 'tenant_id', 'dedupe_key', 'topic', 'request_id', 'headers', 'payload'] },
);

/** A line as the forwarder reads it: without its newline. */
const lineOf = (e: Parameters<typeof formatEntry>[0]): string => formatEntry(e).slice(0, -1);

describe('parseOwnEntry', () => {
  test(`gives what parseEntry gives, for every line formatEntry writes (seed ${SEED})`, () => {
    fc.assert(
      fc.property(entry, (e) => {
        const line = lineOf(e);
        expect(parseOwnEntry(line)).toEqual(parseEntry(line));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test(`gives what parseEntry gives for damaged lines: cut short, a character replaced, inserted or removed (seed ${SEED})`, () => {
    const damage = fc.tuple(fc.nat(), fc.constantFrom('cut', 'replace', 'insert', 'remove'), fc.constantFrom('}', ']', '{', '"', '\\', ',', ':', 'x', '0', ' ', '\u0001'));
    fc.assert(
      fc.property(entry, damage, (e, [at, how, c]) => {
        const line = lineOf(e);
        const i = at % line.length;
        const bad = how === 'cut' ? line.slice(0, i) : how === 'replace' ? line.slice(0, i) + c + line.slice(i + 1) : how === 'insert' ? line.slice(0, i) + c + line.slice(i) : line.slice(0, i) + line.slice(i + 1);
        expect(parseOwnEntry(bad)).toEqual(parseEntry(bad));
      }),
      { seed: SEED, numRuns: 5000 },
    );
  });

  test('payloads checked by their grammar, without JSON.parse: numbers, literals, escapes, spaces, nesting past the scan depth and payloads JSON refuses give what parseEntry gives', () => {
    const deep = (n: number): string => `{"d":${'['.repeat(n)}${']'.repeat(n)}}`;
    const payloads = [
      '{"n":-0.5e+3,"z":0,"x":1E-2,"t":true,"f":false,"u":null,"s":"\\u00e9\\n\\"\\\\","e":[],"o":{}}',
      '{ "a" : [ 1 , 2 ] ,"b":{ } }',
      deep(126),
      deep(127),
      deep(300),
      '{"n":01}',
      '{"n":1.}',
      '{"n":-}',
      '{"a":[1,]}',
      '{"a":1,}',
      '{"s":"\\x"}',
      '{"s":"\\u12"}',
      '{"a":tru}',
      '{"a":1 2}',
      '{"a" 1}',
      '{a:1}',
    ];
    for (const payload of payloads) {
      const line = lineOf({ seq: 9, ts: '2026-11-28T00:00:00.000Z', tenant_id: 't', dedupe_key: 'k', topic: 'events', request_id: 'r', headers: {}, payload });
      expect(parseOwnEntry(line)).toEqual(parseEntry(line));
    }
  });

  test('lines a JSON reader refuses are refused with parseEntry\'s reason', () => {
    const good = lineOf({ seq: 7, ts: '2026-11-28T00:00:00.000Z', tenant_id: 't', dedupe_key: 'k', topic: 'events', request_id: 'r', headers: {}, payload: '{"a":[1,{"b":2}]}' });
    expect(parseOwnEntry(good)).toEqual({ seq: 7, ts: '2026-11-28T00:00:00.000Z', tenant_id: 't', dedupe_key: 'k', topic: 'events', request_id: 'r', headers: {}, payload: '{"a":[1,{"b":2}]}' });
    for (const bad of [good.replace('"seq":7', '"seq":07'), good.replace('[1,', '[tru,'), good.replace('{"b":2}', '{"b":2]'), `${good}}`, good.slice(0, -1), 'this is not json']) {
      const reason = parseOwnEntry(bad);
      expect(typeof reason).toBe('string');
      expect(reason).toBe(parseEntry(bad));
    }
  });
});
