import { describeConfigsV4, type Connection } from '@platformatic/kafka';

const TOPIC_RESOURCE = 2;
/** Topic compression types under which the broker keeps a producer's uncompressed batch as sent. */
const KEPT_AS_SENT = new Set(['producer', 'uncompressed']);

/**
 * The largest record batch `topic` takes (its effective `max.message.bytes`), when the broker checks
 * an uncompressed batch as it was sent: not when the topic's `compression.type` makes the broker
 * recompress (then a larger but compressible record can pass where a smaller one did not). Undefined
 * when not sure: another compression, or a request that failed (not authorized to describe, say).
 */
export async function uncompressedSizeLimit(connection: Connection, topic: string): Promise<number | undefined> {
  try {
    const response = await describeConfigsV4.api.async(
      connection,
      [{ resourceType: TOPIC_RESOURCE, resourceName: topic, configurationKeys: ['max.message.bytes', 'compression.type'] }],
      false,
      false,
    );
    const configs = new Map((response.results[0]?.configs ?? []).map((c) => [c.name, c.value]));
    const limit = Number(configs.get('max.message.bytes'));
    if (!KEPT_AS_SENT.has(configs.get('compression.type') ?? '') || !Number.isSafeInteger(limit) || limit <= 0) return undefined;
    return limit;
  } catch {
    return undefined;
  }
}
