import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Database } from '../outbox/db.ts';
import { claimOutbox } from '../outbox/identity.ts';
import type { Tenants } from '../tenants.ts';
import { Processor } from './processor.ts';
import { createPublishing, type Publishing } from './publisher.ts';
import type { TenantControls } from './tenant-controls.ts';

export interface Processing {
  readonly processor: Processor;
  readonly publishing: Publishing;
  /** Stops the processor (each open batch committed or aborted, partitions released), then the producers. */
  close(): Promise<void>;
}

/** The Kafka producers and the processor, as both `serve` and `process` run them. */
export async function startProcessing(opts: {
  config: Config;
  db: Database;
  brokers: string[];
  tenants: Tenants;
  controls: TenantControls;
  metrics: Metrics;
  log: Logger;
}): Promise<Processing> {
  const { config, db, brokers } = opts;
  const outboxIdentity = await claimOutbox(db.sql, config.partitions);
  const publishing = createPublishing({ ...config.kafka, ...config.processor, brokers, outboxIdentity });
  const processor = new Processor({
    ...config.processor,
    ...config.outbox,
    sql: db.sql,
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
  });
  processor.start();
  let closing: Promise<void> | undefined;
  return {
    processor,
    publishing,
    close() {
      closing ??= processor.stop().finally(() => publishing.close());
      return closing;
    },
  };
}
