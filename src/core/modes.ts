/** When a write is answered: after the outbox commit, after the journal fsync, or once queued. */
export const WRITE_MODES = ['sync', 'fast_ack', 'background'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

export const GUARANTEES = ['exactly_once', 'at_least_once'] as const;
export type Guarantee = (typeof GUARANTEES)[number];

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/** Where an outbox row stands: waiting to be published, in Kafka, or given up on. */
export const OUTBOX_STATUSES = ['pending', 'sent', 'dead'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
