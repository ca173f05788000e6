import { describe, expect, test } from 'bun:test';
import { pollWindow, type PollMark } from '../../src/processor/poll-window.ts';

/** A poll at `at` (ms) that saw top `top` and, after its snapshot, a writer begun at `oldestWriter` (or none). */
const mark = (top: number, at: number, oldestWriter: number | null = null): PollMark => ({ top: String(top), at, oldestWriter });
const tops = (marks: PollMark[]): string[] => marks.map((m) => m.top);

/** The polls kept after a run of polls every 50 ms, each given as [top, oldestWriter]. */
function run(polls: [number, number | null][], lookbackMs?: number): PollMark[] {
  let marks: PollMark[] = [];
  polls.forEach(([top, writer], i) => {
    marks = pollWindow(marks, mark(top, i * 50, writer), lookbackMs);
  });
  return marks;
}

describe("where the processor's poll starts looking", () => {
  test('the first polls keep themselves; then, with no writer running, the poll two before the latest bounds the next look', () => {
    expect(tops(run([[7, null]]))).toEqual(['7']);
    expect(tops(run([[7, null], [8, null]]))).toEqual(['7', '8']);
    expect(tops(run([[7, null], [8, null], [9, null]]))).toEqual(['7', '8', '9']);
    expect(tops(run([[7, null], [8, null], [9, null], [10, null], [11, null]]))).toEqual(['9', '10', '11']);
  });

  test('short writers always running: the newest poll whose successor began after every writer the deciding poll saw', () => {
    // Each poll sees a writer begun 10 ms before it: the poll before the latest (at 200) saw one begun
    // at 190, after the poll at 150 began, so that poll's predecessor (at 100) bounds the next look.
    const polls: [number, number | null][] = [0, 1, 2, 3, 4, 5].map((i) => [10 * (i + 1), i * 50 - 10]);
    expect(tops(run(polls))).toEqual(['30', '40', '50', '60']);
    // A writer begun 60 ms before each poll: one poll further back.
    const slower: [number, number | null][] = [0, 1, 2, 3, 4, 5].map((i) => [10 * (i + 1), i * 50 - 60]);
    expect(tops(run(slower))).toEqual(['20', '30', '40', '50', '60']);
  });

  test('a writer that runs on keeps the window open, back to the lookback and no further; once it ends the window closes', () => {
    // A writer begun at -5 ms runs through poll 8 (at 400 ms).
    const polls: [number, number | null][] = Array.from({ length: 9 }, (_, i) => [100 + i, -5]);
    const open = run(polls, 300);
    // Kept back to 100 ms (the lookback of 300 before 400), not to the first poll.
    expect(open[0]?.at).toBe(100);
    expect(open.at(-1)?.at).toBe(400);
    // It ended: the next poll saw no writer, and the one after closes the window.
    let marks = pollWindow(open, mark(200, 450, null), 300);
    expect(marks[0]?.at).toBe(150);
    marks = pollWindow(marks, mark(201, 500, null), 300);
    expect(tops(marks)).toEqual(['108', '200', '201']);
    expect(marks.map((m) => m.at)).toEqual([400, 450, 500]);
  });

  test('the window never closes on the evidence of the latest poll alone: its writers were read after its snapshot', () => {
    // The latest poll saw no writer, the one before saw one begun before everything kept.
    const marks = pollWindow([mark(1, 0), mark(2, 50, -100), mark(3, 100, -100)], mark(4, 150, null));
    expect(tops(marks)).toEqual(['1', '2', '3', '4']);
  });
});
