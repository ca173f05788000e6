import { describe, expect, test } from 'bun:test';
import { Readiness } from '../../src/http/readiness.ts';

describe('Readiness', () => {
  test('ready when every required component is ok; the others are reported but do not count', async () => {
    const r = new Readiness()
      .add('journal', true, () => ({ ok: true }))
      .add('kafka', false, () => ({ ok: false, detail: 'KAFKA_BROKERS k:9092: connection refused' }));
    expect(await r.report()).toEqual({
      ready: true,
      components: { journal: { ok: true, required: true }, kafka: { ok: false, required: false, detail: 'KAFKA_BROKERS k:9092: connection refused' } },
    });
    r.add('outbox', true, async () => ({ ok: false, detail: 'down' }));
    expect((await r.report()).ready).toBe(false);
  });

  test('a check that throws is a failed component with its message, not a 500', async () => {
    const r = new Readiness().add('outbox', true, async () => {
      throw new Error('connection terminated');
    });
    expect(await r.report()).toEqual({ ready: false, components: { outbox: { ok: false, required: true, detail: 'connection terminated' } } });
  });

  test('a check that never answers is reported as such after 2 s, and the others still are', async () => {
    const r = new Readiness()
      .add('journal', true, () => ({ ok: true }))
      .add('outbox', true, () => new Promise(() => {}));
    expect(await r.report()).toEqual({
      ready: false,
      components: { journal: { ok: true, required: true }, outbox: { ok: false, required: true, detail: 'no answer within 2s' } },
    });
  });
});
