import { createTopicsV7, metadataV12, type Connection } from '@platformatic/kafka';
import { classifyFailure, describeKafkaError } from './errors.ts';

/** How long a topic the broker is creating (auto-created by the failed send, say) is waited for. */
export const CREATION_WAIT_MS = 2_000;
const CREATION_POLL_MS = 20;

/** Codes of a CreateTopics validation that no retry changes: a bad or colliding name, a policy. */
const NEVER_CREATED = new Set(['INVALID_TOPIC_EXCEPTION', 'POLICY_VIOLATION']);

interface TopicFailure {
  /** The broker's error code name (UNKNOWN_TOPIC_OR_PARTITION). */
  code: string;
  /** The whole failure, for describeKafkaError and classifyFailure. */
  error: unknown;
  /** The broker's own words about this topic, when it sent some. */
  detail: string | null;
}

/**
 * Which of `topics` the cluster refuses for good, each with the broker's reason.
 *
 * A metadata request cannot tell: under KRaft it answers UNKNOWN_TOPIC_OR_PARTITION both for a topic
 * it refuses to create (one colliding with another under the ./_ rule) and for one it is creating
 * right now — an innocent tenant's new topic, auto-created by the very send that failed alongside
 * the culprit's. So each topic it calls unknown is put to a CreateTopics that only validates: a
 * colliding or invalid name or a policy's veto is a refusal in the broker's words; "already exists"
 * is a topic being created, waited for (up to CREATION_WAIT_MS) so the retry that follows finds it;
 * a creatable name (auto-creation off, say) is no refusal: its records are retried with backoff, in
 * case an operator creates it. A request that fails as a whole refuses nothing.
 */
export async function topicRefusals(connection: Connection, topics: readonly string[], timeoutMs: number): Promise<Map<string, string>> {
  const refusals = new Map<string, string>();
  const unknown: string[] = [];
  for (const [topic, f] of await metadataFailures(connection, topics, true)) {
    if (f.code === 'UNKNOWN_TOPIC_OR_PARTITION') unknown.push(topic);
    else if (classifyFailure(f.error) === 'refused') refusals.set(topic, describeKafkaError(f.error));
  }
  if (unknown.length === 0) return refusals;
  const creating: string[] = [];
  for (const [topic, f] of await validationFailures(connection, unknown, timeoutMs)) {
    if (NEVER_CREATED.has(f.code)) refusals.set(topic, f.detail === null ? describeKafkaError(f.error) : `${f.code}: ${f.detail}`);
    else if (f.code === 'TOPIC_ALREADY_EXISTS') creating.push(topic);
  }
  const deadline = performance.now() + CREATION_WAIT_MS;
  let waiting = creating;
  while (waiting.length > 0 && performance.now() < deadline) {
    await Bun.sleep(CREATION_POLL_MS);
    const failures = await metadataFailures(connection, waiting, false);
    waiting = waiting.filter((t) => failures.get(t)?.code === 'UNKNOWN_TOPIC_OR_PARTITION');
  }
  return refusals;
}

async function metadataFailures(connection: Connection, topics: readonly string[], autocreate: boolean): Promise<Map<string, TopicFailure>> {
  try {
    await metadataV12.api.async(connection, [...topics], autocreate, false);
    return new Map();
  } catch (err) {
    return perTopic(err);
  }
}

async function validationFailures(connection: Connection, topics: readonly string[], timeoutMs: number): Promise<Map<string, TopicFailure>> {
  const requests = topics.map((name) => ({ name, numPartitions: -1, replicationFactor: -1, assignments: [], configs: [] }));
  try {
    await createTopicsV7.api.async(connection, requests, timeoutMs, true);
    return new Map();
  } catch (err) {
    return perTopic(err);
  }
}

/** The topics a per-topic response failed, by name; none when the request failed as a whole. */
function perTopic(err: unknown): Map<string, TopicFailure> {
  const failures = new Map<string, TopicFailure>();
  const { errors, response } = err as { errors?: unknown; response?: { topics?: { name?: string | null; errorMessage?: string | null }[] } };
  if (!Array.isArray(errors)) return failures;
  for (const inner of errors as { path?: unknown; apiId?: unknown }[]) {
    const index = typeof inner.path === 'string' ? /^\/topics\/(\d+)$/.exec(inner.path)?.[1] : undefined;
    const entry = index === undefined ? undefined : response?.topics?.[Number(index)];
    if (typeof entry?.name !== 'string' || typeof inner.apiId !== 'string') continue;
    failures.set(entry.name, { code: inner.apiId, error: inner, detail: entry.errorMessage ?? null });
  }
  return failures;
}
