import { z } from 'zod';

/**
 * Why a topic name cannot be published to, or undefined when it can. Stricter than Kafka's own
 * syntax: `.` and `..` are refused by brokers, and `__`-prefixed names are Kafka's internal topics,
 * which a client may not write (and whose metadata crashes the Kafka client instead of failing).
 */
/** Kafka's own topic syntax. */
export const KAFKA_TOPIC_SYNTAX = /^[A-Za-z0-9._-]{1,249}$/;

export function topicNameProblem(name: string): string | undefined {
  if (!KAFKA_TOPIC_SYNTAX.test(name)) return 'is not a valid Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)';
  if (name === '.' || name === '..') return 'is not a valid Kafka topic name';
  if (name.startsWith('__')) return 'names an internal Kafka topic';
  return undefined;
}

/** A setting or tenants-file entry naming a topic: the same rule as topicNameProblem. */
export const topicNameSchema = z.string().superRefine((name, ctx) => {
  const problem = topicNameProblem(name);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** Kafka refuses to create a topic whose name equals an existing one's once `.` and `_` are treated alike. */
export function collisionKey(name: string): string {
  return name.replaceAll('.', '_');
}

/** The topics sluice itself is configured with; any other topic colliding with one of them is refused. */
export interface SluiceTopics {
  progressTopic: string;
  defaultTopic: string;
  /** The tenants file's topics (it can be reloaded, so asked each time). */
  tenantTopicCollision(name: string): string | undefined;
}

/**
 * The one topic rule, applied at ingest (a 400 naming the reason) and again at publish (a row that
 * fails it is dead at once, never sent): Kafka's syntax, no `.`/`..`, no `__` internal topics, not
 * sluice's progress topic, and no name that collides with another sluice topic under Kafka's `.`/`_`
 * rule (the broker would refuse it with an error that looks like an outage).
 */
export function topicProblem(name: string, topics: SluiceTopics): string | undefined {
  const syntax = topicNameProblem(name);
  if (syntax !== undefined) return syntax;
  if (name === topics.progressTopic) return 'is sluice\'s progress topic';
  const key = collisionKey(name);
  for (const own of [topics.progressTopic, topics.defaultTopic]) {
    if (own !== name && collisionKey(own) === key) return `collides with topic ${own} (Kafka treats . and _ alike)`;
  }
  return topics.tenantTopicCollision(name);
}

/** The SluiceTopics of a deployment: its progress and default topics, and its tenants file's topics. */
export function sluiceTopics(
  progressTopic: string,
  defaultTopic: string,
  tenants: { topicCollision(topic: string): string | undefined },
): SluiceTopics {
  return { progressTopic, defaultTopic, tenantTopicCollision: (t) => tenants.topicCollision(t) };
}
