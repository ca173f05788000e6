import { SluiceError, type ErrorCode } from '../errors.ts';

/**
 * What a failed publish means for the records in it:
 * - `fenced`: a newer owner of the partition took over; this instance must stop publishing it;
 * - `record`: Kafka rejects these records for good (too large, invalid): retrying cannot help;
 * - `refused`: a topic the broker refuses (invalid, unknown and not creatable, not authorized):
 *   once the broker confirms it for that topic alone, its records are dead;
 * - `topic`: the tenant's topic cannot take writes right now (not enough replicas): the tenant's
 *   problem, counted by its breaker, retried with backoff;
 * - `transient`: the cluster or the network failed: everyone's problem, nobody's fault.
 */
export type FailureKind = 'fenced' | 'record' | 'refused' | 'topic' | 'transient';

/**
 * The one table of broker error codes and what each means for a publish; any other code, and the
 * client's own failures (network, timeout), are `transient`: retried, nobody charged, nothing dead.
 * The client's `canRetry` flag is not a guide here: it calls BROKER_NOT_AVAILABLE, its own timeouts
 * and TRANSACTION_ABORTABLE final and CORRUPT_MESSAGE retriable, the opposite of what each means for
 * a transactional producer. Listed as transient: the producer-state codes a transaction recovers
 * from by aborting and starting again (what sluice does on any failure that does not fence it).
 */
const KAFKA_CODES: Readonly<Record<string, FailureKind>> = {
  PRODUCER_FENCED: 'fenced',
  INVALID_PRODUCER_EPOCH: 'fenced',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'fenced',
  MESSAGE_TOO_LARGE: 'record',
  RECORD_LIST_TOO_LARGE: 'record',
  INVALID_RECORD: 'record',
  CORRUPT_MESSAGE: 'record',
  TOPIC_AUTHORIZATION_FAILED: 'refused',
  INVALID_TOPIC_EXCEPTION: 'refused',
  UNKNOWN_TOPIC_OR_PARTITION: 'refused',
  POLICY_VIOLATION: 'refused',
  NOT_ENOUGH_REPLICAS: 'topic',
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: 'topic',
  TRANSACTION_ABORTABLE: 'transient',
  INVALID_TXN_STATE: 'transient',
  UNKNOWN_PRODUCER_ID: 'transient',
  OUT_OF_ORDER_SEQUENCE_NUMBER: 'transient',
  CONCURRENT_TRANSACTIONS: 'transient',
  BROKER_NOT_AVAILABLE: 'transient',
  UNKNOWN_SERVER_ERROR: 'transient',
};

/** The most telling kind wins when an aggregated error holds several. */
const PRECEDENCE: readonly FailureKind[] = ['fenced', 'record', 'refused', 'topic', 'transient'];

const ERROR_CODE: Readonly<Record<FailureKind, ErrorCode>> = {
  fenced: 'kafka_fenced',
  record: 'kafka_rejected',
  refused: 'kafka_topic_refused',
  topic: 'kafka_topic_unavailable',
  transient: 'kafka_unavailable',
};

/** A failed Kafka request, classified once: its kind, the broker's codes, the client's error as cause. */
export class KafkaError extends SluiceError {
  readonly kind: FailureKind;
  readonly kafkaCodes: readonly string[];

  constructor(kind: FailureKind, kafkaCodes: readonly string[], message: string, cause: unknown) {
    super(ERROR_CODE[kind], message, { cause });
    this.kind = kind;
    this.kafkaCodes = kafkaCodes;
  }
}

/** The client's error as a KafkaError (one already classified is returned as is). */
export function kafkaError(err: unknown): KafkaError {
  if (err instanceof KafkaError) return err;
  const codes = [...new Set(errorCodes(err))];
  return new KafkaError(classifyFailure(err), codes, describeKafkaError(err), err);
}

export function classifyFailure(err: unknown): FailureKind {
  if (err instanceof KafkaError) return err.kind;
  const kinds = new Set(errorCodes(err).map((code) => KAFKA_CODES[code] ?? 'transient'));
  return PRECEDENCE.find((k) => kinds.has(k)) ?? 'transient';
}

/** Kafka error codes (`apiId`s) anywhere in an error, its aggregated errors and its causes. */
export function errorCodes(err: unknown, seen = new Set<unknown>()): string[] {
  if (typeof err !== 'object' || err === null || seen.has(err)) return [];
  seen.add(err);
  const e = err as { apiId?: unknown; code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  const codes: string[] = [];
  if (typeof e.apiId === 'string') codes.push(e.apiId);
  // @platformatic/kafka turns the broker's UNKNOWN_TOPIC_OR_PARTITION into a UserError without the
  // code (what a topic colliding with another under the ./_ rule gets, and one still being created:
  // topic-refusals.ts tells them apart): told by its message.
  if (e.code === 'PLT_KFK_USER' && typeof e.message === 'string' && e.message.startsWith('Unknown topic ')) codes.push('UNKNOWN_TOPIC_OR_PARTITION');
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, seen));
  if (e.cause !== undefined) codes.push(...errorCodes(e.cause, seen));
  return codes;
}

/** One line for logs and `last_error`: the Kafka codes when there are any, else the message. */
export function describeKafkaError(err: unknown): string {
  if (err instanceof KafkaError) return err.message;
  const codes = [...new Set(errorCodes(err))];
  const message = err instanceof Error ? err.message : String(err);
  return codes.length > 0 ? `${codes.join(', ')}: ${message}` : message;
}

/**
 * The `reason` label of a failed publish: the Kafka error code when there is one, else `network`
 * or `timeout` for the client's own failures. A closed, small set, unlike error class names.
 */
export function failureReason(err: unknown): string {
  const [code] = errorCodes(err);
  if (code !== undefined) return code.toLowerCase();
  const clientCodes = new Set<string>();
  const walk = (e: unknown, seen: Set<unknown>): void => {
    if (typeof e !== 'object' || e === null || seen.has(e)) return;
    seen.add(e);
    const x = e as { code?: unknown; errors?: unknown; cause?: unknown };
    if (typeof x.code === 'string') clientCodes.add(x.code);
    if (Array.isArray(x.errors)) for (const inner of x.errors) walk(inner, seen);
    walk(x.cause, seen);
  };
  walk(err, new Set());
  if (clientCodes.has('PLT_KFK_TIMEOUT')) return 'timeout';
  if (clientCodes.has('PLT_KFK_NETWORK') || [...clientCodes].some((c) => /^E[A-Z]+$/.test(c))) return 'network';
  return 'other';
}
