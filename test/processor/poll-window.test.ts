import { describe, expect, test } from 'bun:test';
import { BEFORE_FIRST_POLL, pollWindow, POLL_LOOKBACK_MS, type PollMark } from '../../src/processor/poll-window.ts';

/** A poll at `at` (ms) that saw top `top` and, after its snapshot, a writer begun at `oldestWriter` (or none). */
const mark = (top: number, at: number, oldestWriter: number | null = null): PollMark => ({ top: String(top), at, oldestWriter });
const tops = (marks: PollMark[]): string[] => marks.map((m) => m.top);
const MAX_IDS = 10_000;

/** The polls kept after a run of polls every 50 ms, each given as [top, oldestWriter]. */
function run(polls: [number, number | null][], lookbackMs = POLL_LOOKBACK_MS): PollMark[] {
  let marks: PollMark[] = [];
  polls.forEach(([top, writer], i) => {
    marks = pollWindow(marks, mark(top, i * 50, writer), lookbackMs, MAX_IDS);
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

  test("short writers always running: the newest poll whose successor began after every writer the deciding poll saw", () => {
    // Each poll sees a writer begun 10 ms before it: the poll before the latest (at 200) saw one begun
    // at 190, after the poll at 150 began, so that poll's predecessor (at 100) bounds the next look.
    const polls: [number, number | null][] = [0, 1, 2, 3, 4, 5].map((i) => [10 * (i + 1), i * 50 - 10]);
    expect(tops(run(polls))).toEqual(['30', '40', '50', '60']);
    // A writer begun 60 ms before each poll: one poll further back.
    const slower: [number, number | null][] = [0, 1, 2, 3, 4, 5].map((i) => [10 * (i + 1), i * 50 - 60]);
    expect(tops(run(slower))).toEqual(['20', '30', '40', '50', '60']);
    // A writer whose start this role may not see (-Infinity): the window stays open.
    const unseen: [number, number | null][] = [0, 1, 2, 3, 4, 5].map((i) => [10 * (i + 1), Number.NEGATIVE_INFINITY]);
    expect(tops(run(unseen))).toEqual(['10', '20', '30', '40', '50', '60']);
  });

  test('a writer that runs on keeps the window open, back to the lookback from the first poll above it, and no further; once it ends the window closes', () => {
    // A writer begun at -5 ms runs through poll 8 (at 400 ms).
    const polls: [number, number | null][] = Array.from({ length: 9 }, (_, i) => [100 + i, -5]);
    const open = run(polls, 300);
    // The poll at 50 is kept: the one after it (at 100) saw its successor's ids 300 ms before the latest.
    expect(open[0]?.at).toBe(50);
    expect(open.at(-1)?.at).toBe(400);
    // It ended: the next poll saw no writer, and the one after closes the window.
    let marks = pollWindow(open, mark(200, 450, null), 300, MAX_IDS);
    expect(marks[0]?.at).toBe(100);
    marks = pollWindow(marks, mark(201, 500, null), 300, MAX_IDS);
    expect(tops(marks)).toEqual(['108', '200', '201']);
    expect(marks.map((m) => m.at)).toEqual([400, 450, 500]);
  });

  test('regression (review): after a gap between polls, a row above the window is kept for the lookback from the first poll that saw ids above it, not from the poll before the gap', () => {
    // A poll at 0 sees top 99. At 10 a slow insert takes id 100; 101 commits at 20. Polls fail until
    // 2100, which sees 101 and the slow writer; so do 2150 and 2200. The slow insert commits at 2210.
    let marks = pollWindow([], mark(99, 0), POLL_LOOKBACK_MS, MAX_IDS);
    for (const at of [2100, 2150, 2200]) marks = pollWindow(marks, mark(101, at, 10), POLL_LOOKBACK_MS, MAX_IDS);
    // The poll at 2250 reads from 99 (the first kept top), so it sees row 100.
    expect(marks[0]?.top).toBe('99');
    marks = pollWindow(marks, mark(101, 2250, null), POLL_LOOKBACK_MS, MAX_IDS);
    expect(marks[0]?.top).toBe('99');
  });

  test('the window spans at most half the ids one poll reads (the rest is for new rows): past them, the oldest polls go, as far as the poll two before the latest', () => {
    // A writer running throughout, 1,000 ids a poll: the window keeps what fits in 5,000 ids.
    const polls: [number, number | null][] = Array.from({ length: 12 }, (_, i) => [1_000 * (i + 1), -5]);
    expect(tops(run(polls))).toEqual(['7000', '8000', '9000', '10000', '11000', '12000']);
    // 4,000 a poll: no more than the poll two before the latest.
    expect(tops(run(Array.from({ length: 8 }, (_, i) => [4_000 * (i + 1), -5])))).toEqual(['24000', '28000', '32000']);
    // A burst alone larger than that keeps the poll two before the latest: that poll's read is cut and wakes every task.
    expect(tops(run([[1, null], [2, null], [50_000, -5]]))).toEqual(['1', '2', '50000']);
  });

  test('a processor\'s first polls look at everything until the writers running at the first have ended (outside tester: a partition just taken in a rebalance)', () => {
    const step = (marks: PollMark[], latest: PollMark): PollMark[] => pollWindow(marks.length === 0 ? [BEFORE_FIRST_POLL] : marks, latest, POLL_LOOKBACK_MS, MAX_IDS);
    // No writer: the first three polls look at everything, the fourth reads above the first's top.
    let marks = step([], mark(500, 0));
    expect(marks[0]).toBe(BEFORE_FIRST_POLL);
    marks = step(marks, mark(501, 50));
    expect(marks[0]).toBe(BEFORE_FIRST_POLL);
    marks = step(marks, mark(502, 100));
    expect(tops(marks)).toEqual(['500', '501', '502']);
    // A writer begun before the first poll and running on: everything, until the lookback from the first poll.
    let held = step([], mark(500, 0, -30));
    for (let at = 50; at <= 2_000; at += 50) held = step(held, mark(500 + at, at, -30));
    expect(held[0]).toBe(BEFORE_FIRST_POLL);
    held = step(held, mark(3_000, 2_050, -30));
    expect(held[0]).not.toBe(BEFORE_FIRST_POLL);
    // However many ids enter meanwhile: a look at everything reads no range of them.
    expect(step(step(step([], mark(1, 0, -30)), mark(50_000, 50, -30)), mark(90_000, 100, -30))[0]).toBe(BEFORE_FIRST_POLL);
  });

  test('the window never closes on the evidence of the latest poll alone: its writers were read after its snapshot', () => {
    // The latest poll saw no writer, the one before saw one begun before everything kept.
    const marks = pollWindow([mark(1, 0), mark(2, 50, -100), mark(3, 100, -100)], mark(4, 150, null), POLL_LOOKBACK_MS, MAX_IDS);
    expect(tops(marks)).toEqual(['1', '2', '3', '4']);
  });
});
