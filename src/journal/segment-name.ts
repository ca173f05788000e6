/** Segment files are named by the first seq they hold, zero-padded so that name order is seq order. */
const SEQ_DIGITS = 20;
const pattern = /^(\d{20})\.jsonl(\.gz)?$/;

export interface SegmentName {
  firstSeq: number;
  gzipped: boolean;
  file: string;
}

export function segmentFileName(firstSeq: number, gzipped = false): string {
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 0) {
    throw new RangeError(`segment seq must be a non-negative safe integer: ${firstSeq}`);
  }
  return `${String(firstSeq).padStart(SEQ_DIGITS, '0')}.jsonl${gzipped ? '.gz' : ''}`;
}

/** Parses a segment file name; anything else in a journal directory (temp files, checkpoint) is undefined. */
export function parseSegmentFileName(file: string): SegmentName | undefined {
  const m = pattern.exec(file);
  if (m === null || m[1] === undefined) return undefined;
  const firstSeq = Number(m[1]);
  if (!Number.isSafeInteger(firstSeq)) return undefined;
  return { firstSeq, gzipped: m[2] !== undefined, file };
}

export function compareSegments(a: SegmentName, b: SegmentName): number {
  return a.firstSeq - b.firstSeq;
}
