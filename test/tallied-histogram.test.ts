import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { TalliedHistogram } from '../src/tallied-histogram.ts';

const SEED = Number(process.env['SLUICE_FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The same observations into prom-client's own histogram and into the tallied one, each in a registry of its own. */
function both(observations: [string, number][]): { ours: Registry; theirs: Registry; tallied: TalliedHistogram<'status'> } {
  const ours = new Registry();
  const theirs = new Registry();
  const name = 'sluice_test_duration_seconds';
  const help = 'A test histogram.';
  const tallied = new TalliedHistogram({ name, help, label: 'status', buckets: BUCKETS, registers: [ours] });
  const plain = new Histogram({ name, help, labelNames: ['status'], buckets: BUCKETS, registers: [theirs] });
  for (const [status, value] of observations) {
    tallied.observeOne(status, value);
    plain.observe({ status }, value);
  }
  return { ours, theirs, tallied };
}

const observation = fc.tuple(
  fc.constantFrom('200', '202', '400', '503'),
  fc.oneof(fc.constantFrom(0, ...BUCKETS), fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: -1, max: 0, noNaN: true })),
);

describe('TalliedHistogram', () => {
  test(`its exposition text and JSON are prom-client's for the same observations, bucket bounds included (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 200 }), async (observations) => {
        const { ours, theirs } = both(observations);
        expect(await ours.metrics()).toBe(await theirs.metrics());
        // prom-client's values carry `exemplar: null` (none are enabled); the tallied histogram's carry none.
        const withoutExemplars = (await theirs.getMetricsAsJSON()).map((m) => ({ ...m, values: m.values.map((v) => {
          const { exemplar: _, ...rest } = v as typeof v & { exemplar?: unknown };
          return rest;
        }) }));
        expect(await ours.getMetricsAsJSON()).toEqual(withoutExemplars);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  test('a value on a bound counts in that bound, as Prometheus defines le', async () => {
    const { ours } = both([['202', 0.001]]);
    const text = await ours.metrics();
    expect(text).toContain('sluice_test_duration_seconds_bucket{le="0.0005",status="202"} 0');
    expect(text).toContain('sluice_test_duration_seconds_bucket{le="0.001",status="202"} 1');
    expect(text).toContain('sluice_test_duration_seconds_bucket{le="+Inf",status="202"} 1');
    expect(text).toContain('sluice_test_duration_seconds_count{status="202"} 1');
  });

  test('summed across processes by the aggregator the supervisor uses', async () => {
    const a = both([['202', 0.002], ['400', 3]]).ours;
    const b = both([['202', 0.02]]).ours;
    const summed = AggregatorRegistry.aggregate([await a.getMetricsAsJSON(), await b.getMetricsAsJSON()]);
    const text = await summed.metrics();
    expect(text).toContain('sluice_test_duration_seconds_bucket{le="0.025",status="202"} 2');
    expect(text).toContain('sluice_test_duration_seconds_bucket{le="0.0025",status="202"} 1');
    expect(text).toContain('sluice_test_duration_seconds_count{status="400"} 1');
    expect(text).toContain('sluice_test_duration_seconds_sum{status="400"} 3');
  });

  test("prom-client's own observing methods and a value that is not a finite number are refused, not lost", () => {
    const { tallied } = both([]);
    expect(() => tallied.observe({ status: '202' }, 0.1)).toThrow('observe with observeOne');
    expect(() => tallied.startTimer()).toThrow('observe with observeOne');
    expect(() => tallied.labels('202')).toThrow('observe with observeOne');
    expect(() => tallied.observeOne('202', Number.NaN)).toThrow('not a finite number');
    expect(() => tallied.observeOne('202', Number.POSITIVE_INFINITY)).toThrow('not a finite number');
    expect(() => new TalliedHistogram({ name: 'x_seconds', help: 'x', label: 'status', buckets: [1, 0.5], registers: [] })).toThrow('ascending');
  });

  test('reset forgets every series', async () => {
    const { ours, tallied } = both([['202', 0.002]]);
    tallied.reset();
    expect(await ours.metrics()).not.toContain('status="202"');
  });
});
