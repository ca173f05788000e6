import { expect, test } from 'bun:test';
import { collisionKey, topicProblem, type SluiceTopics } from '../../src/core/topic-rule.ts';

const topics: SluiceTopics = {
  progressTopic: 'sluice.progress',
  defaultTopic: 'sluice.events',
  tenantTopicCollision: (t) => (t !== 'acme.orders' && collisionKey(t) === collisionKey('acme.orders') ? 'collides with topic acme.orders (Kafka treats . and _ alike)' : undefined),
};

test('the topic rule: syntax, . and .., internal topics, the progress topic, ./_ collisions', () => {
  expect(topicProblem('orders', topics)).toBeUndefined();
  expect(topicProblem('sluice.events', topics)).toBeUndefined();
  expect(topicProblem('acme.orders', topics)).toBeUndefined();
  expect(topicProblem('.', topics)).toBe('is not a valid Kafka topic name');
  expect(topicProblem('..', topics)).toBe('is not a valid Kafka topic name');
  expect(topicProblem('...', topics)).toBeUndefined();
  expect(topicProblem('__consumer_offsets', topics)).toBe('names an internal Kafka topic');
  expect(topicProblem('__transaction_state', topics)).toBe('names an internal Kafka topic');
  expect(topicProblem('', topics)).toContain('not a valid Kafka topic name');
  expect(topicProblem('a b', topics)).toContain('not a valid Kafka topic name');
  expect(topicProblem('x'.repeat(250), topics)).toContain('not a valid Kafka topic name');
  expect(topicProblem('sluice.progress', topics)).toBe("is sluice's progress topic");
  expect(topicProblem('sluice_progress', topics)).toBe('collides with topic sluice.progress (Kafka treats . and _ alike)');
  expect(topicProblem('sluice_events', topics)).toBe('collides with topic sluice.events (Kafka treats . and _ alike)');
  expect(topicProblem('acme_orders', topics)).toBe('collides with topic acme.orders (Kafka treats . and _ alike)');
});
