import { expect, test } from 'bun:test';
import { OutboxProgress } from '../../src/ingest/outbox-progress.ts';

test('the record of which journal seqs are in the outbox: what the forwarder skips, reads, and owes', () => {
  const journal = { nextSeq: 11 };
  const progress = new OutboxProgress(journal);
  progress.forwardedThrough(4);
  // Seqs 5..10 were written before this process: the forwarder's to check.
  expect(progress.unforwarded).toBe(6);
  expect(progress.insertedDirectly(10)).toBe(false);

  // A sync batch 11..13: while it is inserted the forwarder reads no further than 10.
  progress.inserting(11);
  journal.nextSeq = 14;
  expect(progress.settledThrough).toBe(10);
  progress.settled(true, { first: 11, last: 13 });
  expect(progress.settledThrough).toBe(13);
  expect([10, 11, 13, 14].map((s) => progress.insertedDirectly(s))).toEqual([false, true, true, false]);

  // A batch whose insert failed leaves a hole: the range the forwarder skips starts again after it.
  progress.inserting(14);
  journal.nextSeq = 16;
  progress.settled(false);
  progress.inserting(16);
  journal.nextSeq = 18;
  progress.settled(true, { first: 16, last: 17 });
  expect([13, 14, 15, 16, 17].map((s) => progress.insertedDirectly(s))).toEqual([false, false, false, true, true]);

  // Rows entered the outbox three times (two batches, one checkpoint); the forwarder's mark only rises.
  expect(progress.entered.value).toBe(3);
  progress.forwardedThrough(17);
  progress.forwardedThrough(12);
  expect(progress.forwarded.value).toBe(17);
  expect(progress.unforwarded).toBe(0);
});
