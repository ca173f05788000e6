/**
 * Why a topic name cannot be published to, or undefined when it can. Stricter than Kafka's own
 * syntax: `.` and `..` are refused by brokers, and `__`-prefixed names are Kafka's internal topics,
 * which a client may not write (and whose metadata crashes the Kafka client instead of failing).
 */
export function topicNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(name)) return 'is not a valid Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)';
  if (name === '.' || name === '..') return 'is not a valid Kafka topic name';
  if (name.startsWith('__')) return 'names an internal Kafka topic';
  return undefined;
}
