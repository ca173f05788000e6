import { describe, expect, test } from 'bun:test';
import type { JournalEntry } from '../../src/core/record.ts';
import { HandoffQueue } from '../../src/ingest/handoff-queue.ts';

const entry = (seq: number): JournalEntry => ({ seq, ts: '2024-01-01T00:00:00.000Z', tenant_id: 'acme', dedupe_key: `k${seq}`, topic: 'events', request_id: `r${seq}`, headers: {}, payload: '{}' });

describe('HandoffQueue.heldFrom', () => {
  test('entries that follow the checkpoint directly are held from the checkpoint itself: the forwarder reads nothing of the file', () => {
    const q = new HandoffQueue();
    // The first group commit of a journal, handed over after a `take` found the queue empty, while
    // the forwarder listed the segments and moved onto the first one.
    q.push({ segment: 1, start: 0, entries: [entry(1), entry(2)], ends: [150, 300], after: { segment: 0, offset: 0 } });
    const cp = { segment: 1, offset: 0, line: 1, seq: 0 };
    expect(q.heldFrom(cp)).toBe(0);
    expect(q.take(cp, 100, 2)).toEqual({ entries: [entry(1), entry(2)], next: { segment: 1, offset: 300, line: 3, seq: 2 } });
    // Further on in the segment, as before: the file is read up to where they begin.
    q.push({ segment: 1, start: 450, entries: [entry(4)], ends: [600] });
    expect(q.heldFrom({ segment: 1, offset: 300, line: 3, seq: 2 })).toBe(450);
  });

  test('at the checkpoint but not its next seq, nothing is held: take would not give it, the file is read', () => {
    const q = new HandoffQueue();
    q.push({ segment: 1, start: 300, entries: [entry(5)], ends: [450] });
    const cp = { segment: 1, offset: 300, line: 3, seq: 2 };
    expect(q.take(cp, 100, 5)).toBeUndefined();
    expect(q.heldFrom(cp)).toBeUndefined();
  });
});
