import { describe, expect, test } from 'bun:test';
import { Watermark } from '../../src/core/watermark.ts';

describe('Watermark', () => {
  test('only moves up; next() resolves once it is past the value asked about', async () => {
    const mark = new Watermark(5);
    mark.advance(3);
    expect(mark.value).toBe(5);
    expect(await mark.next(4)).toBe(5);
    let seen: number | undefined;
    const waiting = mark.next(5).then((v) => {
      seen = v;
    });
    mark.advance(5);
    await Promise.resolve();
    expect(seen).toBeUndefined();
    mark.advance(9);
    await waiting;
    expect(seen).toBe(9);
  });

  test('an aborted signal ends a wait and the iteration', async () => {
    const mark = new Watermark();
    const stop = new AbortController();
    const waiting = mark.next(0, stop.signal);
    stop.abort();
    expect(await waiting).toBe(0);
    const seen: number[] = [];
    for await (const v of mark.changes(stop.signal)) seen.push(v);
    expect(seen).toEqual([]);
  });

  test('changes() yields each new value, coalesced for a reader that falls behind', async () => {
    const mark = new Watermark();
    const stop = new AbortController();
    const seen: number[] = [];
    const reading = (async () => {
      for await (const v of mark.changes(stop.signal)) {
        seen.push(v);
        if (v >= 10) stop.abort();
      }
    })();
    mark.advance(1);
    await Bun.sleep(0);
    // Three steps before the reader runs again: it sees the last.
    mark.advance(2);
    mark.advance(3);
    mark.advance(10);
    await reading;
    expect(seen).toEqual([1, 10]);
  });
});
