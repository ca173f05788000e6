/**
 * Every failure sluice reports to a caller is a SluiceError with a stable `code`.
 * Parts subclass it; only src/http/error-response.ts turns codes into HTTP statuses.
 */
export type ErrorCode =
  | 'config_invalid'
  | 'file_unavailable'
  | 'address_unavailable'
  | 'invalid_json'
  | 'validation_failed'
  | 'unauthorized'
  | 'forbidden'
  | 'payload_too_large'
  | 'request_incomplete'
  | 'header_too_large'
  | 'unsupported_media_type'
  | 'not_found'
  | 'backlog_full'
  | 'overloaded'
  | 'not_ready'
  | 'shutting_down'
  | 'journal_unavailable'
  | 'journal_corrupt'
  | 'outbox_unavailable'
  | 'kafka_unavailable'
  | 'kafka_rejected'
  | 'kafka_fenced'
  | 'kafka_topic_refused'
  | 'kafka_topic_unavailable'
  | 'partition_lost'
  | 'progress_corrupt'
  | 'internal';

export interface ErrorDetail {
  path?: string;
  line?: number;
  message: string;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetail[] | undefined;
  /** Seconds a client should wait before retrying (429/503). */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: ErrorDetail[]; cause?: unknown; retryAfter?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }
}

export class ConfigError extends SluiceError {
  constructor(message: string, details: ErrorDetail[]) {
    super('config_invalid', message, { details });
  }
}

/** Short, loggable description of an unknown thrown value (never includes request bodies). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${err.name} ${code}: ${err.message}` : `${err.name}: ${err.message}`;
  }
  return String(err);
}
