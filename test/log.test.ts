import { describe, expect, test } from 'bun:test';
import { createLogger, ThrottledLog } from '../src/log.ts';

describe('ThrottledLog', () => {
  test('the first of a kind at once, the rest of its interval counted and reported with the next line', () => {
    const lines: Record<string, unknown>[] = [];
    let now = 1_000;
    const t = new ThrottledLog(createLogger({ write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }), 10_000, () => now);
    t.warn('journal_unavailable', 'ingest failed', { code: 'journal_unavailable' });
    for (let i = 0; i < 500; i++) t.warn('journal_unavailable', 'ingest failed', { code: 'journal_unavailable' });
    // Another kind is not held back by the first.
    t.warn('internal', 'ingest failed', { code: 'internal' });
    now += 9_999;
    t.warn('journal_unavailable', 'ingest failed', { code: 'journal_unavailable' });
    expect(lines.map((l) => [l.level, l.code, l.suppressed])).toEqual([
      ['warn', 'journal_unavailable', undefined],
      ['warn', 'internal', undefined],
    ]);
    now += 1;
    t.warn('journal_unavailable', 'ingest failed', { code: 'journal_unavailable', request_id: 'r-1' });
    expect(lines.at(-1)).toMatchObject({ level: 'warn', msg: 'ingest failed', code: 'journal_unavailable', request_id: 'r-1', suppressed: 501 });
    now += 10_000;
    t.warn('journal_unavailable', 'ingest failed', { code: 'journal_unavailable' });
    expect(lines.at(-1)?.suppressed).toBeUndefined();
    expect(lines).toHaveLength(4);
  });
});
