import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import type { JournalEntry } from '../../src/core/record.ts';
import { formatEntry, leadingSeq, LineBuffer } from '../../src/journal/entry.ts';

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The line as it was first written: JSON.stringify of the fields in order, the payload spliced in. */
function reference(e: JournalEntry): string {
  const head = JSON.stringify({ seq: e.seq, ts: e.ts, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, topic: e.topic, request_id: e.request_id, headers: e.headers });
  const payload = /[\r\n]/.test(e.payload) ? `"payload_text":${JSON.stringify(e.payload)}` : `"payload":${e.payload}`;
  const trace = e.traceparent === undefined ? '' : `,"traceparent":${JSON.stringify(e.traceparent)}`;
  return `${head.slice(0, -1)},${payload}${trace}}\n`;
}

const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', 'acme', 'k-1', 'a"b', 'a\\b', '\u007f', '\u0080é', '\ud800'));
const payload = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ v })),
  fc.constantFrom('{\n"a":1}', '{"a":\r1}', '{ "big" : 1e400 }', '{"s":"\ud800𝄞é"}'),
);
const entry: fc.Arbitrary<JournalEntry> = fc.record(
  {
    seq: fc.oneof(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(1, 9, 10, 99, 100, 1e15, Number.MAX_SAFE_INTEGER)),
    ts: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    tenant_id: text,
    dedupe_key: text,
    topic: text,
    request_id: text,
    headers: fc.dictionary(text, text, { maxKeys: 3 }),
    payload,
    traceparent: text,
  },
  { requiredKeys: ['seq', 'ts', 'tenant_id', 'dedupe_key', 'topic', 'request_id', 'headers', 'payload'] },
);

describe('journal entry', () => {
  test(`LineBuffer writes a group's lines back to back, the same bytes as the line format always had, growing and reused (seed ${SEED})`, () => {
    const lines = new LineBuffer(8);
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 6 }), (group) => {
        lines.reset();
        const ends = group.map((e) => lines.add(e));
        const expected = group.map(reference);
        // Compared as bytes, what the file holds (a lone surrogate in a payload is encoded as U+FFFD either way).
        expect(lines.bytes().equals(Buffer.from(expected.join('')))).toBe(true);
        let end = 0;
        expected.forEach((line, i) => expect(ends[i]).toBe((end += Buffer.byteLength(line))));
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  test(`formatEntry writes the same bytes as the line format always had (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        entry,
        (e) => {
          const line = formatEntry(e);
          expect(Buffer.from(line).equals(Buffer.from(reference(e)))).toBe(true);
          expect(leadingSeq(line)).toBe(e.seq);
        },
      ),
      { seed: SEED, numRuns: 2000 },
    );
  });
});
