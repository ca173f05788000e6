import { expect, test } from 'bun:test';
import { checkHistory, type KafkaRecord, type Mode, type Op } from './history.ts';

const op = (tenant: string, n: number, mode: Mode, outcome: Op['outcome'] = 'ok'): Op => ({
  tenant,
  key: `${tenant}-${n}`,
  mode,
  n,
  attempts: 1,
  outcome,
  refusals: {},
});
const rec = (tenant: string, n: number): KafkaRecord => ({ key: `${tenant}:${tenant}-${n}`, headers: {} });

test('a clean history: every acknowledged write once, in order', () => {
  const ops = [op('a', 0, 'sync'), op('a', 1, 'sync'), op('b', 0, 'fast_ack'), op('c', 0, 'background')];
  const r = checkHistory(ops, [rec('a', 0), rec('b', 0), rec('a', 1), rec('c', 0)]);
  expect(r).toEqual({
    acknowledged: { sync: 2, fast_ack: 1, background: 1 },
    unknown: 0,
    failed: 0,
    lost: [],
    lostBackground: 0,
    duplicated: [],
    outOfOrder: [],
    phantom: [],
  });
});

test('lost, duplicated, reordered and phantom records are each found', () => {
  const ops = [op('a', 0, 'sync'), op('a', 1, 'sync'), op('a', 2, 'sync'), op('b', 0, 'fast_ack'), op('c', 0, 'background')];
  const r = checkHistory(ops, [rec('a', 1), rec('a', 0), rec('a', 1), rec('x', 9)]);
  expect(r.lost).toEqual(['a:a-2', 'b:b-0']);
  expect(r.lostBackground).toBe(1);
  expect(r.duplicated).toEqual(['a:a-1']);
  // a-0 was acknowledged before a-1 was sent, yet a-1 came first.
  expect(r.outOfOrder).toEqual(['a:a-1 (?, 1 attempts) before a:a-0 (?, 1 attempts)']);
  expect(r.phantom).toEqual(['x:x-9']);
});

test('unknown and failed writes may be present or absent; background order is not promised', () => {
  const ops = [op('a', 0, 'sync', 'unknown'), op('a', 1, 'sync', 'failed'), op('c', 0, 'background'), op('c', 1, 'background')];
  const r = checkHistory(ops, [rec('a', 0), rec('c', 1), rec('c', 0)]);
  expect(r.lost).toEqual([]);
  expect(r.outOfOrder).toEqual([]);
  expect(r.phantom).toEqual([]);
  expect(r.unknown).toBe(1);
  expect(r.failed).toBe(1);
});
