import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The lines of one plain segment as the README tells a reader to take them: its written part ends at
 * the first NUL byte (the zeros of a preallocated active segment follow it).
 */
export function segmentLines(path: string): string[] {
  const bytes = readFileSync(path);
  const nul = bytes.indexOf(0);
  return (nul === -1 ? bytes : bytes.subarray(0, nul))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.length > 0);
}

/** Every line of a node directory's plain segments, in seq order; none when it does not exist. */
export function nodeJournalLines(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) => segmentLines(join(dir, f)));
}
