import { Histogram, type LabelValues, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';

interface Tally {
  /** Per bucket, not cumulative; the last is +Inf's own. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram with one label whose observations are tallied by plain arithmetic: prom-client's
 * observe checks and hashes its labels and walks its buckets through an object on every call, ~0.65 µs
 * — the ingest route's one such cost left a request (~2 % of its CPU; README, "Benchmarks"). Its
 * series, as get() and the registry read them, are those of the prom-client histogram it extends:
 * the same names, `le` labels, cumulative buckets, sum and count, summed across processes by the
 * supervisor as before. Only observeOne observes; prom-client's other observing methods throw.
 */
export class TalliedHistogram<T extends string> extends Histogram<T> {
  readonly #name: string;
  readonly #help: string;
  readonly #label: T;
  readonly #bounds: readonly number[];
  readonly #tallies = new Map<string, Tally>();

  constructor(config: { name: string; help: string; label: T; buckets: number[]; registers: ConstructorParameters<typeof Histogram<T>>[0]['registers'] }) {
    super({ name: config.name, help: config.help, labelNames: [config.label], buckets: config.buckets, registers: config.registers });
    this.#name = config.name;
    this.#help = config.help;
    this.#label = config.label;
    if (config.buckets.some((b, i) => i > 0 && b <= (config.buckets[i - 1] as number))) throw new TypeError(`${config.name}: buckets must be ascending`);
    this.#bounds = config.buckets;
    // prom-client's own observing paths would fill series get() never reads. Its constructor sets
    // `observe` on the instance, so these are replaced there too, not on the prototype.
    const refuse = (): never => {
      throw new TypeError(`${config.name}: observe with observeOne`);
    };
    Object.assign(this, { observe: refuse, startTimer: refuse, labels: refuse, zero: refuse, remove: refuse });
  }

  observeOne(labelValue: string, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.#name}: value is not a finite number: ${value}`);
    let tally = this.#tallies.get(labelValue);
    if (tally === undefined) {
      tally = { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
      this.#tallies.set(labelValue, tally);
    }
    const bounds = this.#bounds;
    let b = 0;
    while (b < bounds.length && value > (bounds[b] as number)) b++;
    tally.counts[b] = (tally.counts[b] as number) + 1;
    tally.sum += value;
    tally.count++;
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    const values: MetricValueWithName<T>[] = [];
    const bucketName = `${this.#name}_bucket`;
    for (const [labelValue, { counts, sum, count }] of this.#tallies) {
      const own = { [this.#label]: labelValue } as LabelValues<T>;
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += counts[i] as number;
        values.push({ metricName: bucketName, labels: { le, ...own }, value: cumulative });
      });
      values.push({ metricName: bucketName, labels: { le: '+Inf', ...own }, value: count });
      values.push({ metricName: `${this.#name}_sum`, labels: own, value: sum });
      values.push({ metricName: `${this.#name}_count`, labels: own, value: count });
    }
    // As prom-client's own histograms return it: its typings give `type` as a numeric enum that its
    // code does not export, and a `collect` its histograms do not return.
    const metric = { name: this.#name, help: this.#help, type: 'histogram', aggregator: 'sum', values };
    return metric as unknown as MetricObjectWithValues<MetricValueWithName<T>>;
  }

  /** What the registry reads for its text: the same series as get(). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    return this.get();
  }

  override reset(): void {
    // prom-client's constructor calls reset before this class's fields exist.
    if (#tallies in this) this.#tallies.clear();
  }
}
