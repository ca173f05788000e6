import { BackgroundLoop } from '../background-loop.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { ProbeResult } from '../probes.ts';
import type { ComponentState } from '../core/component-state.ts';

export interface KafkaHealthOptions {
  brokers: readonly string[];
  /** One bounded probe of the cluster: `probeKafka` in production. */
  probe: () => Promise<ProbeResult & { cause?: string }>;
  intervalMs: number;
  log: Logger;
  metrics: Metrics;
  /** Called when the cluster starts or stops answering (and after the first probe). */
  onChange?: (ok: boolean) => void;
  clock?: Clock;
}

/**
 * Whether the Kafka cluster answers, probed in the background. It logs once per change of state
 * (unreachable, with the brokers and the cause; reachable again, with how long it was down) rather
 * than once per failed publish of every partition, and exports `sluice_kafka_reachable` for the
 * broker-unreachable alert. The processor's readiness is this state.
 */
export class KafkaHealth {
  #o: KafkaHealthOptions;
  #state: ComponentState = { ok: false, detail: 'not probed yet' };
  #probed = false;
  /** Probes overlap (the loop and each /readyz): only the newest answer may change the state. */
  #started = 0;
  #applied = 0;
  #downSince = 0;
  #loop: BackgroundLoop;
  #label: string;

  constructor(opts: KafkaHealthOptions) {
    this.#o = opts;
    this.#label = opts.brokers.join(',');
    this.#loop = new BackgroundLoop({
      name: 'kafka health probe',
      log: opts.log,
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      intervalMs: opts.intervalMs,
      pass: async () => void (await this.check()),
    });
  }

  get state(): ComponentState {
    return this.#state;
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** Probes now and records the result (unless a probe started later has already answered). */
  async check(): Promise<ComponentState> {
    const seq = ++this.#started;
    const r = await this.#o.probe();
    if (this.#loop.signal.aborted || seq < this.#applied) return this.#state;
    this.#applied = seq;
    const { log, metrics, brokers } = this.#o;
    const before = this.#probed ? this.#state.ok : undefined;
    this.#probed = true;
    this.#state = r.ok ? { ok: true } : { ok: false, detail: r.detail };
    metrics.kafkaReachable.set({ brokers: this.#label }, r.ok ? 1 : 0);
    if (r.ok && before === false) log.info('kafka reachable again', { brokers, down_ms: Date.now() - this.#downSince });
    if (!r.ok && before !== false) {
      this.#downSince = Date.now();
      log.warn('kafka unreachable; records wait in the outbox', { brokers, cause: r.cause ?? r.detail });
    }
    if (r.ok !== before) this.#o.onChange?.(r.ok);
    return this.#state;
  }
}
