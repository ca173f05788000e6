import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import type { JournalEntry } from '../../src/core/record.ts';
import { formatEntry, leadingSeq } from '../../src/journal/entry.ts';

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The line as it was first written: JSON.stringify of the fields in order, the payload spliced in. */
function reference(e: JournalEntry): string {
  const head = JSON.stringify({ seq: e.seq, ts: e.ts, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, topic: e.topic, request_id: e.request_id, headers: e.headers });
  const payload = /[\r\n]/.test(e.payload) ? `"payload_text":${JSON.stringify(e.payload)}` : `"payload":${e.payload}`;
  const trace = e.traceparent === undefined ? '' : `,"traceparent":${JSON.stringify(e.traceparent)}`;
  return `${head.slice(0, -1)},${payload}${trace}}\n`;
}

describe('journal entry', () => {
  test(`formatEntry writes the same bytes as the line format always had (seed ${SEED})`, () => {
    const text = fc.string({ unit: 'binary', maxLength: 12 });
    const payload = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ v })),
      fc.constantFrom('{\n"a":1}', '{"a":\r1}', '{ "big" : 1e400 }'),
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
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
        ),
        (e) => {
          const line = formatEntry(e);
          expect(line).toBe(reference(e));
          expect(leadingSeq(line)).toBe(e.seq);
        },
      ),
      { seed: SEED, numRuns: 2000 },
    );
  });
});
