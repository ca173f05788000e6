import { describe, expect, test } from 'bun:test';
import { compareSegments, parseSegmentFileName, segmentFileName } from '../../src/journal/segment-name.ts';

describe('segment names', () => {
  test('are the first seq padded to 20 digits', () => {
    expect(segmentFileName(1)).toBe('00000000000000000001.jsonl');
    expect(segmentFileName(1234, true)).toBe('00000000000000001234.jsonl.gz');
  });

  test('parse back, plain and gzipped', () => {
    expect(parseSegmentFileName('00000000000000000042.jsonl')).toEqual({
      firstSeq: 42,
      gzipped: false,
      file: '00000000000000000042.jsonl',
    });
    expect(parseSegmentFileName('00000000000000000042.jsonl.gz')?.gzipped).toBe(true);
  });

  test('ignore anything that is not a segment', () => {
    for (const f of ['checkpoint.json', '42.jsonl', '00000000000000000042.jsonl.gz.tmp', '0000000000000000004a.jsonl']) {
      expect(parseSegmentFileName(f)).toBeUndefined();
    }
  });

  test('sort in seq order, which is also name order', () => {
    const names = [100, 9, 10].map((n) => parseSegmentFileName(segmentFileName(n)));
    const sorted = names.filter((n) => n !== undefined).sort(compareSegments);
    expect(sorted.map((s) => s.firstSeq)).toEqual([9, 10, 100]);
    expect(sorted.map((s) => s.file)).toEqual([...sorted.map((s) => s.file)].sort());
  });

  test('reject negative or unsafe seqs', () => {
    expect(() => segmentFileName(-1)).toThrow(RangeError);
    expect(() => segmentFileName(2 ** 60)).toThrow(RangeError);
  });
});
