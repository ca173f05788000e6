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

const FENCED = new Set(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED']);
const RECORD = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']);
const REFUSED = new Set(['TOPIC_AUTHORIZATION_FAILED', 'INVALID_TOPIC_EXCEPTION', 'UNKNOWN_TOPIC_OR_PARTITION', 'POLICY_VIOLATION']);
const TOPIC = new Set(['NOT_ENOUGH_REPLICAS', 'NOT_ENOUGH_REPLICAS_AFTER_APPEND']);

export function classifyFailure(err: unknown): FailureKind {
  const codes = errorCodes(err);
  if (codes.some((c) => FENCED.has(c))) return 'fenced';
  if (codes.some((c) => RECORD.has(c))) return 'record';
  if (codes.some((c) => REFUSED.has(c))) return 'refused';
  if (codes.some((c) => TOPIC.has(c))) return 'topic';
  return 'transient';
}

/** Kafka error codes (`apiId`s) anywhere in an error, its aggregated errors and its causes. */
export function errorCodes(err: unknown, seen = new Set<unknown>()): string[] {
  if (typeof err !== 'object' || err === null || seen.has(err)) return [];
  seen.add(err);
  const e = err as { apiId?: unknown; code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  const codes: string[] = [];
  if (typeof e.apiId === 'string') codes.push(e.apiId);
  // @platformatic/kafka turns the broker's UNKNOWN_TOPIC_OR_PARTITION into a UserError without the
  // code (what a topic colliding with another under the ./_ rule gets): told by its message.
  if (e.code === 'PLT_KFK_USER' && typeof e.message === 'string' && e.message.startsWith('Unknown topic ')) codes.push('UNKNOWN_TOPIC_OR_PARTITION');
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, seen));
  if (e.cause !== undefined) codes.push(...errorCodes(e.cause, seen));
  return codes;
}

/** One line for logs and `last_error`: the Kafka codes when there are any, else the message. */
export function describeKafkaError(err: unknown): string {
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
