import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { dedupeKeySchema, isDedupeKey, isTenantId, tenantIdSchema } from '../../src/core/identifiers.ts';
import { eventSchema, isValidEvent } from '../../src/http/event-schema.ts';

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** Strings near every rule's edges: id characters, control characters, lone surrogates, long ones. */
const edgy = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '.', '_', '-', ':', ' ', '/'), maxLength: 8 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.string({ unit: fc.constantFrom('a', '\u0000', '\u001f', '\u007f', '\u009f', '\ud800', '\udc00', 'é'), maxLength: 6 }),
  fc.integer({ min: 0, max: 600 }).map((n) => 'k'.repeat(n)),
  fc.integer({ min: 120, max: 135 }).map((n) => `t:${'n'.repeat(n)}`),
  fc.constantFrom('tenant:ns', 'a:\u0085', 'topic.name', 'x'.repeat(249), 'x'.repeat(250), '__proto__', 'tenant_id', 'Tenant-ID ', 'traceparent'),
);
const value = fc.oneof(edgy, fc.jsonValue({ maxDepth: 2 }), fc.dictionary(edgy, fc.oneof(edgy, fc.integer()), { maxKeys: 4 }));
const event = fc.dictionary(fc.oneof(fc.constantFrom('dedupe_key', 'payload', 'topic', 'headers', 'tenant_id', 'namespace'), edgy), value, { maxKeys: 7 });

describe('event-schema', () => {
  test(`isValidEvent accepts exactly what eventSchema accepts (seed ${SEED})`, () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(event, fc.record({ payload: fc.dictionary(edgy, value) }, { requiredKeys: [] }).chain((base) => event.map((e) => ({ ...e, ...base })))), (v) => {
        // As a client's JSON reaches them: through JSON.parse (so `__proto__` is an own member).
        const parsed = JSON.parse(JSON.stringify(v)) as unknown;
        const expected = eventSchema.safeParse(parsed).success;
        expect(isValidEvent(parsed)).toBe(expected);
        if (expected) accepted++;
      }),
      { seed: SEED, numRuns: 3000 },
    );
    expect(isValidEvent(JSON.parse('{"payload":{},"__proto__":{}}'))).toBe(false);
    expect(isValidEvent({ payload: {}, headers: { a: 'b' }, tenant_id: 'acme', namespace: 'acme:x', topic: 't', dedupe_key: 'k' })).toBe(true);
    // Not vacuous: some generated events pass.
    expect(accepted).toBeGreaterThan(0);
  });

  test(`isTenantId and isDedupeKey agree with their schemas (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.oneof(edgy, fc.integer()), (v) => {
        expect(isTenantId(v)).toBe(tenantIdSchema.safeParse(v).success);
        expect(isDedupeKey(v)).toBe(dedupeKeySchema.safeParse(v).success);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });
});
