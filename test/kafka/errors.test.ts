import { describe, expect, test } from 'bun:test';
import { MultipleErrors, NetworkError, ProtocolError, TimeoutError } from '@platformatic/kafka';
import { SluiceError } from '../../src/errors.ts';
import { classifyFailure, describeKafkaError, failureReason, kafkaError, KafkaError } from '../../src/kafka/errors.ts';

/** A produce that failed the way @platformatic/kafka reports it: broker errors inside a MultipleErrors. */
function produceFailed(...codes: string[]): Error {
  return new MultipleErrors('Producing messages failed.', codes.map((c) => new ProtocolError(c)));
}

describe('Kafka failures through one table', () => {
  test('each kind by its broker code, nested in the client\'s aggregate or cause', () => {
    expect(classifyFailure(produceFailed('MESSAGE_TOO_LARGE'))).toBe('record');
    expect(classifyFailure(produceFailed('PRODUCER_FENCED'))).toBe('fenced');
    expect(classifyFailure(new Error('x', { cause: new ProtocolError('TOPIC_AUTHORIZATION_FAILED') }))).toBe('refused');
    expect(classifyFailure(produceFailed('NOT_ENOUGH_REPLICAS'))).toBe('topic');
    // The client's own spelling of UNKNOWN_TOPIC_OR_PARTITION (a topic colliding under the ./_ rule).
    expect(classifyFailure(Object.assign(new Error('Unknown topic a_b.'), { code: 'PLT_KFK_USER' }))).toBe('refused');
    expect(classifyFailure(new Error('connect ECONNREFUSED'))).toBe('transient');
  });

  test('the most telling kind wins when one failure holds several codes', () => {
    expect(classifyFailure(produceFailed('NOT_ENOUGH_REPLICAS', 'MESSAGE_TOO_LARGE'))).toBe('record');
    expect(classifyFailure(produceFailed('MESSAGE_TOO_LARGE', 'INVALID_PRODUCER_EPOCH'))).toBe('fenced');
  });

  test('the client\'s retriable flag does not decide: its final timeouts and broker-unavailable are transient, its retriable CORRUPT_MESSAGE a record\'s', () => {
    const timeout = new TimeoutError('Request timed out.');
    expect(timeout.canRetry).toBe(false);
    expect(classifyFailure(timeout)).toBe('transient');
    for (const code of ['BROKER_NOT_AVAILABLE', 'TRANSACTION_ABORTABLE', 'INVALID_TXN_STATE', 'UNKNOWN_SERVER_ERROR']) {
      const err = new ProtocolError(code);
      expect(err.canRetry).toBe(false);
      expect(classifyFailure(produceFailed(code))).toBe('transient');
    }
    const corrupt = new ProtocolError('CORRUPT_MESSAGE');
    expect(corrupt.canRetry).toBe(true);
    expect(classifyFailure(produceFailed('CORRUPT_MESSAGE'))).toBe('record');
    // A code the table does not name harms nobody: retried, no record dead, no tenant charged.
    expect(classifyFailure(produceFailed('INVALID_REQUIRED_ACKS'))).toBe('transient');
  });

  test('a failure becomes a KafkaError once: a SluiceError with a stable code, the codes, the cause kept', () => {
    const cause = produceFailed('MESSAGE_TOO_LARGE');
    const err = kafkaError(cause);
    expect(err).toBeInstanceOf(KafkaError);
    expect(err).toBeInstanceOf(SluiceError);
    expect([err.code, err.kind, err.kafkaCodes]).toEqual(['kafka_rejected', 'record', ['MESSAGE_TOO_LARGE']]);
    expect(err.cause).toBe(cause);
    expect(err.message).toBe('MESSAGE_TOO_LARGE: Producing messages failed.');
    expect(kafkaError(err)).toBe(err);
    expect(describeKafkaError(err)).toBe(err.message);
    expect(classifyFailure(err)).toBe('record');
    expect(failureReason(err)).toBe('message_too_large');
    const codes = ['PRODUCER_FENCED', 'TOPIC_AUTHORIZATION_FAILED', 'NOT_ENOUGH_REPLICAS'].map((c) => kafkaError(produceFailed(c)).code);
    expect(codes).toEqual(['kafka_fenced', 'kafka_topic_refused', 'kafka_topic_unavailable']);
    const down = kafkaError(new MultipleErrors('failed', [new NetworkError('Connection closed')]));
    expect([down.code, down.kind, down.kafkaCodes]).toEqual(['kafka_unavailable', 'transient', []]);
    expect(failureReason(down)).toBe('network');
  });

  test('converted at the boundary, a failure is judged as the raw one was: kind, line, metric reason', () => {
    const raws = [
      produceFailed('PRODUCER_FENCED'),
      produceFailed('MESSAGE_TOO_LARGE', 'NOT_ENOUGH_REPLICAS'),
      new MultipleErrors('failed', [new NetworkError('Connection closed')]),
      new TimeoutError('Request timed out.'),
      new TypeError('null is not an object'),
    ];
    for (const raw of raws) {
      const converted = kafkaError(raw);
      expect([classifyFailure(converted), describeKafkaError(converted), failureReason(converted)]).toEqual([
        classifyFailure(raw),
        describeKafkaError(raw),
        failureReason(raw),
      ]);
    }
  });
});
