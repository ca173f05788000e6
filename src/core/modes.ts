/** When a write is answered: after the outbox commit, after the journal fsync, or once queued. */
export const WRITE_MODES = ['sync', 'fast_ack', 'background'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

export const GUARANTEES = ['exactly_once', 'at_least_once'] as const;
export type Guarantee = (typeof GUARANTEES)[number];

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
