import { Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client';
import { INCIDENT_KINDS } from './journal/integrity.ts';
import { TalliedHistogram } from './tallied-histogram.ts';
import { VERSION } from './version.ts';

/**
 * The one registry and every metric. Per-tenant metrics carry a `tenant` label. prom-client's default
 * Node metrics are not registered: under Bun several are empty or wrong, and their names fail promtool.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly ingestRequests: Counter<'status' | 'tenant'>;
  readonly ingestLatency: TalliedHistogram<'status'>;
  readonly ingestEvents: Counter<'tenant' | 'result'>;
  /** The ingest route's counts of ingestRequests and ingestEvents, gathered between reads (see CounterTally). */
  readonly ingestTally: IngestTally;
  /** Bytes of request bodies ingest holds (src/http/body-budget.ts keeps it), read at each scrape. */
  readonly ingestBodyBytes: { bytes: number };
  readonly journalBytesWritten: Counter;
  readonly journalFsyncSeconds: Histogram;
  readonly journalGroupCommitRecords: Histogram;
  readonly journalTornTails: Counter;
  readonly journalBadLines: Counter;
  readonly journalBytes: Gauge;
  readonly journalSegments: Gauge<'state'>;
  readonly journalCompressed: Counter;
  readonly journalRetentionDeletedSegments: Counter;
  readonly journalRetentionDeletedRecords: Counter;
  readonly journalIncidents: Counter<'kind'>;
  readonly forwardedRecords: Counter<'result'>;
  readonly forwarderLag: Gauge;
  readonly forwarderQuarantined: Counter;
  readonly forwarderFailingSeconds: Gauge;
  readonly outboxPending: Gauge<'tenant'>;
  readonly published: Counter<'tenant'>;
  readonly publishLatency: Histogram;
  readonly publishFailures: Counter<'reason'>;
  readonly publishBatchSize: Histogram;
  readonly publishRetries: Counter<'tenant'>;
  readonly dead: Counter<'tenant'>;
  readonly outboxDead: Gauge<'tenant'>;
  readonly outboxOldestPending: Gauge<'tenant'>;
  readonly breakerState: Gauge<'tenant'>;
  readonly quotaThrottled: Counter<'tenant'>;
  readonly backlogRejected: Counter<'tenant'>;
  readonly partitions: Gauge;
  readonly partitionsOwned: Gauge;
  readonly transactions: Counter<'result'>;
  readonly outboxRetentionDeleted: Counter;
  readonly replayed: Counter<'tenant' | 'kind'>;
  readonly adminRequests: Counter<'route' | 'status'>;
  readonly kafkaReachable: Gauge<'brokers'>;
}

export interface IngestTally {
  request(status: string, tenant: string): void;
  events(tenant: string, result: 'accepted' | 'duplicate', n: number): void;
}

/**
 * Increments of a labelled counter gathered by label set and added to it when it is read (its
 * collect, which every scrape and get() runs first): prom-client hashes and checks the labels of each
 * inc, a cost the ingest route paid twice a request. A read sees every increment made before it; the
 * gathered label sets are let go at each read, so a tenant whose series were dropped leaves nothing.
 */
class CounterTally<T extends string> {
  #pending = new Map<string, { labels: LabelValues<T>; n: number }>();

  add(key: string, labels: () => LabelValues<T>, n: number): void {
    const p = this.#pending.get(key);
    if (p === undefined) this.#pending.set(key, { labels: labels(), n });
    else p.n += n;
  }

  flushInto(counter: Counter<T>): void {
    if (this.#pending.size === 0) return;
    const pending = this.#pending;
    this.#pending = new Map();
    for (const { labels, n } of pending.values()) counter.inc(labels, n);
  }
}

/** A counter that takes in its tally's counts whenever it is read (a scrape, get(), the supervisor's read). */
function talliedCounter<T extends string>(tally: CounterTally<T>, config: { name: string; help: string; labelNames: T[]; registers: Registry[] }): Counter<T> {
  const counter: Counter<T> = new Counter<T>({
    ...config,
    collect() {
      tally.flushInto(counter);
    },
  });
  return counter;
}

/** Every kind starts at 0, so an alert on its increase fires on the very first incident. */
function journalIncidentCounter(registers: Registry[]): Counter<'kind'> {
  const counter = new Counter({
    name: 'sluice_journal_integrity_incidents_total',
    help: 'Journal integrity incidents by kind (gap, missing_segment, checkpoint_ahead, compression_mismatch, unreadable_segment): acknowledged records in no file.',
    labelNames: ['kind'],
    registers,
  });
  for (const kind of INCIDENT_KINDS) counter.inc({ kind }, 0);
  return counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const reg = [registry];
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers: reg,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since the Unix epoch in seconds.',
    registers: reg,
  }).set(Math.round(Date.now() / 1000 - process.uptime()));
  new Gauge({
    name: 'sluice_build_info',
    help: 'Always 1; the labels say which sluice and which Bun run here.',
    labelNames: ['version', 'bun'],
    registers: reg,
  }).set({ version: VERSION, bun: Bun.version }, 1);
  const ingestBodyBytes = { bytes: 0 };
  new Gauge({
    name: 'sluice_ingest_body_bytes',
    help: 'Bytes of request bodies ingest holds, from their arrival to their answers, as SLUICE_MAX_BODY_BYTES_IN_FLIGHT (which bounds it) counts them: an NDJSON event line as 512 bytes at least.',
    registers: reg,
    collect() {
      this.set(ingestBodyBytes.bytes);
    },
  });
  const requests = new CounterTally<'status' | 'tenant'>();
  const events = new CounterTally<'tenant' | 'result'>();
  const ingestRequests = talliedCounter(requests, {
    name: 'sluice_ingest_requests_total',
    help: 'Ingest HTTP requests by response status and tenant.',
    labelNames: ['status', 'tenant'],
    registers: reg,
  });
  const ingestEvents = talliedCounter(events, {
    name: 'sluice_ingest_events_total',
    help: 'Events accepted by ingest, by tenant and result (accepted or duplicate).',
    labelNames: ['tenant', 'result'],
    registers: reg,
  });
  return {
    registry,
    ingestRequests,
    ingestLatency: new TalliedHistogram({
      name: 'sluice_ingest_request_duration_seconds',
      help: 'Ingest request latency from arrival to response, by status.',
      label: 'status',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: reg,
    }),
    ingestEvents,
    ingestBodyBytes,
    ingestTally: {
      // Keys join the label values with a character no label value holds (status is digits, tenant
      // labels are tenant ids or the fixed overflow and unknown labels).
      request: (status, tenant) => requests.add(`${status}\u0000${tenant}`, () => ({ status, tenant }), 1),
      events: (tenant, result, n) => events.add(`${tenant}\u0000${result}`, () => ({ tenant, result }), n),
    },
    journalBytesWritten: new Counter({
      name: 'sluice_journal_written_bytes_total',
      help: 'Bytes appended to journal segments.',
      registers: reg,
    }),
    journalFsyncSeconds: new Histogram({
      name: 'sluice_journal_fsync_duration_seconds',
      help: 'Duration of each journal group commit\'s durable write (an O_DSYNC write: its bytes, and the size that reaches them, on disk), until the event loop takes up its completion: under load, mostly that wait.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: reg,
    }),
    journalGroupCommitRecords: new Histogram({
      name: 'sluice_journal_group_commit_records',
      help: 'Records in one journal group commit: under load, many commits of one record mean writes waiting a whole commit behind a lone one.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
      registers: reg,
    }),
    journalTornTails: new Counter({
      name: 'sluice_journal_torn_tails_total',
      help: 'Torn last lines truncated from the newest segment at start.',
      registers: reg,
    }),
    journalBadLines: new Counter({
      name: 'sluice_journal_bad_lines_total',
      help: 'Corrupt journal lines found by the forwarder; left in place, never forwarded.',
      registers: reg,
    }),
    journalBytes: new Gauge({
      name: 'sluice_journal_bytes',
      help: 'Bytes of all journal segments on disk (gzipped ones at their compressed size).',
      registers: reg,
    }),
    journalSegments: new Gauge({
      name: 'sluice_journal_segments',
      help: 'Journal segments on disk, by state (active, plain, gzipped).',
      labelNames: ['state'],
      registers: reg,
    }),
    journalCompressed: new Counter({
      name: 'sluice_journal_compressed_segments_total',
      help: 'Closed segments gzipped.',
      registers: reg,
    }),
    journalRetentionDeletedSegments: new Counter({
      name: 'sluice_journal_retention_deleted_segments_total',
      help: 'Journal segments retention deleted; only forwarded segments are ever deleted.',
      registers: reg,
    }),
    journalRetentionDeletedRecords: new Counter({
      name: 'sluice_journal_retention_deleted_records_total',
      help: 'Journal records in the segments retention deleted.',
      registers: reg,
    }),
    journalIncidents: journalIncidentCounter(reg),
    forwardedRecords: new Counter({
      name: 'sluice_forwarded_records_total',
      help: 'Journal records passed by the forwarder, by result (inserted, duplicate, already_in_outbox).',
      labelNames: ['result'],
      registers: reg,
    }),
    forwarderLag: new Gauge({
      name: 'sluice_forwarder_lag_records',
      help: 'Journal records written but not yet forwarded to the outbox.',
      registers: reg,
    }),
    forwarderQuarantined: new Counter({
      name: 'sluice_forwarder_quarantined_total',
      help: 'Journal lines the outbox refused for good, recorded in forwarder_quarantine and passed over.',
      registers: reg,
    }),
    forwarderFailingSeconds: new Gauge({
      name: 'sluice_forwarder_failing_seconds',
      help: 'How long the forwarder has failed without a break (0 while it works).',
      registers: reg,
    }),
    outboxPending: new Gauge({
      name: 'sluice_outbox_pending',
      help: 'Outbox records waiting to be published, by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    published: new Counter({
      name: 'sluice_published_total',
      help: 'Records published to Kafka, by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    publishLatency: new Histogram({
      name: 'sluice_publish_duration_seconds',
      help: 'Duration of one publish batch (Kafka send until acknowledged).',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: reg,
    }),
    publishFailures: new Counter({
      name: 'sluice_publish_failures_total',
      help: 'Publish batches that failed, by reason.',
      labelNames: ['reason'],
      registers: reg,
    }),
    publishBatchSize: new Histogram({
      name: 'sluice_publish_batch_records',
      help: 'Records in one publish batch (one Kafka transaction in exactly_once).',
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      registers: reg,
    }),
    publishRetries: new Counter({
      name: 'sluice_publish_retries_total',
      help: 'Records whose publish failed and were scheduled for another attempt, by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    dead: new Counter({
      name: 'sluice_dead_total',
      help: 'Records that became dead (rejected by Kafka for good, or out of attempts), by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    outboxDead: new Gauge({
      name: 'sluice_outbox_dead',
      help: 'Dead records in the outbox (replayable), by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    outboxOldestPending: new Gauge({
      name: 'sluice_outbox_oldest_pending_seconds',
      help: 'Age of the oldest record waiting to be published, by tenant (0 when none waits).',
      labelNames: ['tenant'],
      registers: reg,
    }),
    breakerState: new Gauge({
      name: 'sluice_breaker_state',
      help: 'Circuit breaker state per tenant: 0 closed, 1 open, 2 half-open.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    quotaThrottled: new Counter({
      name: 'sluice_quota_throttled_total',
      help: 'Claim rounds in which the tenant quota held back records waiting to be published (no tokens left, or fewer than the records waiting), by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    backlogRejected: new Counter({
      name: 'sluice_backlog_rejected_total',
      help: 'Ingest requests answered 429 backlog_full because the tenant passed max_pending, by tenant.',
      labelNames: ['tenant'],
      registers: reg,
    }),
    partitions: new Gauge({
      name: 'sluice_partitions',
      help: 'Outbox partitions configured (SLUICE_PARTITIONS).',
      registers: reg,
    }),
    partitionsOwned: new Gauge({
      name: 'sluice_partitions_owned',
      help: 'Outbox partitions this processor instance owns.',
      registers: reg,
    }),
    transactions: new Counter({
      name: 'sluice_kafka_transactions_total',
      help: 'Kafka transactions ended by the processor, by result (committed, aborted).',
      labelNames: ['result'],
      registers: reg,
    }),
    outboxRetentionDeleted: new Counter({
      name: 'sluice_outbox_retention_deleted_total',
      help: 'Sent outbox records deleted after SLUICE_OUTBOX_RETENTION_MS.',
      registers: reg,
    }),
    replayed: new Counter({
      name: 'sluice_replayed_total',
      help: 'Records re-queued for publication, by tenant and kind (ids, tenant, journal).',
      labelNames: ['tenant', 'kind'],
      registers: reg,
    }),
    adminRequests: new Counter({
      name: 'sluice_admin_requests_total',
      help: 'Admin API calls by route and response status.',
      labelNames: ['route', 'status'],
      registers: reg,
    }),
    kafkaReachable: new Gauge({
      name: 'sluice_kafka_reachable',
      help: 'Whether the Kafka cluster answered the last probe (1) or not (0), by bootstrap broker list; only processes that publish export it.',
      labelNames: ['brokers'],
      registers: reg,
    }),
  };
}

/**
 * Gives each tenant its per-tenant series at 0, before anything happened to it: an alert on
 * `increase()` sees the first dead record of a tenant only if its series existed before at 0.
 */
export function zeroTenantSeries(metrics: Metrics, tenants: readonly string[]): void {
  for (const tenant of tenants) {
    for (const result of ['accepted', 'duplicate']) metrics.ingestEvents.inc({ tenant, result }, 0);
    for (const kind of ['ids', 'tenant', 'journal']) metrics.replayed.inc({ tenant, kind }, 0);
    for (const counter of [metrics.published, metrics.publishRetries, metrics.dead, metrics.quotaThrottled, metrics.backlogRejected]) {
      counter.inc({ tenant }, 0);
    }
  }
}

/**
 * Removes every series of `tenant` (its label went to a busier tenant, see TenantLabels), so the
 * series stay bounded by the cap however many tenants took turns at it.
 */
export async function dropTenantSeries(metrics: Metrics, tenant: string): Promise<void> {
  const perTenant = [
    metrics.ingestRequests,
    metrics.ingestEvents,
    metrics.outboxPending,
    metrics.published,
    metrics.publishRetries,
    metrics.dead,
    metrics.outboxDead,
    metrics.outboxOldestPending,
    metrics.breakerState,
    metrics.quotaThrottled,
    metrics.backlogRejected,
    metrics.replayed,
  ];
  for (const metric of perTenant) {
    for (const { labels } of (await metric.get()).values) {
      if (labels.tenant === tenant) metric.remove(labels);
    }
  }
}
