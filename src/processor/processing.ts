import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { ComponentState } from '../core/component-state.ts';
import type { Database } from '../outbox/db.ts';
import type { Outbox } from '../outbox/outbox.ts';
import { probeKafka } from '../probes.ts';
import type { Tenants } from '../tenants.ts';
import type { Watermark } from '../core/watermark.ts';
import { KafkaHealth } from './kafka-health.ts';
import { Processor } from './processor.ts';
import { createPublishing, type Publishing } from './publisher.ts';
import type { TenantControls } from './tenant-controls.ts';

export interface Processing {
  readonly processor: Processor;
  readonly publishing: Publishing;
  /** Whether the cluster answers; logged once per change of state. */
  readonly kafka: KafkaHealth;
  /** The `kafka` component of /readyz: a fresh probe, with the last publish error while one stands. */
  kafkaReadiness(): Promise<ComponentState>;
  /** Stops the processor (each open batch committed or aborted, partitions released), then the producers. */
  close(): Promise<void>;
}

// Under the 2 s readiness bound, which probes on every /readyz.
const KAFKA_PROBE_TIMEOUT_MS = 1_500;
const KAFKA_PROBE_INTERVAL_MS = 5_000;
// Two probes in a row that fail: a blip keeps the partitions, an outage hands them to instances that can publish.
const KAFKA_UNREACHABLE_RELEASE_MS = 2 * KAFKA_PROBE_INTERVAL_MS;

/** The Kafka producers and the processor, as both `serve` and `process` run them. */
export async function startProcessing(opts: {
  config: Config;
  db: Database;
  outbox: Outbox;
  brokers: string[];
  tenants: Tenants;
  controls: TenantControls;
  metrics: Metrics;
  log: Logger;
  /** serve: the ingest's mark of rows entering the outbox, which the processor follows. */
  entered?: Watermark;
  /** serve's processor in a process of its own: its supervisor relays the ingest's inserts (Processor.wakePartitions). */
  relayed?: boolean;
}): Promise<Processing> {
  const { config, db, brokers } = opts;
  const outboxIdentity = await opts.outbox.claim();
  const publishing = createPublishing({ ...config.kafka, ...config.processor, brokers, outboxIdentity });
  const kafka = new KafkaHealth({
    brokers,
    probe: () => probeKafka(brokers, KAFKA_PROBE_TIMEOUT_MS),
    intervalMs: KAFKA_PROBE_INTERVAL_MS,
    log: opts.log,
    metrics: opts.metrics,
    onChange: () => processor.kafkaChanged(),
  });
  const processor = new Processor({
    ...config.processor,
    ...config.outbox,
    outbox: opts.outbox,
    lockSession: (onClose) => db.session(onClose),
    exclusive: db.kind === 'embedded',
    brokers,
    clientId: config.kafka.clientId,
    defaultTopic: config.kafka.topic,
    publishing,
    controls: opts.controls,
    tenants: opts.tenants,
    log: opts.log,
    metrics: opts.metrics,
    partitions: config.partitions,
    outboxIdentity,
    canProcess: () => kafka.state.ok,
    canProcessNow: async () => (await kafka.check()).ok,
    unreachableReleaseMs: KAFKA_UNREACHABLE_RELEASE_MS,
    entered: opts.entered,
    relayed: opts.relayed,
  });
  kafka.start();
  processor.start();
  let closing: Promise<void> | undefined;
  return {
    processor,
    publishing,
    kafka,
    async kafkaReadiness() {
      const state = await kafka.check();
      const publishError = processor.lastError;
      return state.ok && publishError !== undefined ? { ok: true, detail: `cluster answers; last publish failed: ${publishError}` } : state;
    },
    close() {
      closing ??= Promise.all([kafka.stop(), processor.stop()]).finally(() => publishing.close()).then(() => {});
      return closing;
    },
  };
}
