import { Consumer, FetchIsolationLevels, IS_CONTROL, IS_TRANSACTIONAL } from '@platformatic/kafka';
import { SluiceError } from '../errors.ts';

/** A record of a committed (or non-transactional) write, as read from one partition. */
export interface CommittedRecord {
  partition: number;
  offset: bigint;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

const COMMIT_MARKER = 1;

/**
 * Reads the committed records of one partition between two offsets, deciding each transaction by
 * its own COMMIT or ABORT marker: records of a transaction still open (no marker yet) are left out.
 *
 * Why not @platformatic/kafka's message stream with read_committed: it filters aborted records with
 * a map keyed by producer id, so of several aborted transactions of one producer in a fetch only
 * the last is dropped (and none when the abort marker falls into the next fetch). A transactional
 * producer per partition aborts often — every failed batch — so that stream hands out records that
 * never committed. Here a transaction's records wait until its marker arrives. The fetch itself is
 * READ_UNCOMMITTED, up to the high watermark: a READ_COMMITTED fetch stops at the first open
 * transaction and would hide the markers of transactions committed after it began.
 */
export class CommittedReader {
  #consumer: Consumer;

  constructor(brokers: string[], clientId: string) {
    this.#consumer = new Consumer({
      clientId,
      groupId: `${clientId}-${Bun.randomUUIDv7()}`,
      bootstrapBrokers: brokers,
      isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
      autocommit: false,
      // A topic just created has its leaders tens of ms later: a first start's reads of the progress
      // topic waited a whole 200-ms step for them. Not more retries: against a broker that hangs,
      // each try can wait for the client's timeouts, and a failed read is tried again by its task.
      retries: 3,
      retryDelay: 50,
    });
  }

  /** The high watermark (next offset to be written) of each partition. */
  async endOffsets(topic: string, partitions: number[]): Promise<Map<number, bigint>> {
    const offsets = await this.#consumer.listOffsets({
      topics: [topic],
      partitions: { [topic]: partitions },
      isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
    });
    const list = offsets.get(topic) ?? [];
    return new Map(partitions.map((p) => [p, list[p] ?? 0n]));
  }

  async partitionCount(topic: string): Promise<number> {
    const metadata = await this.#consumer.metadata({ topics: [topic], forceUpdate: true });
    return metadata.topics.get(topic)?.partitionsCount ?? 0;
  }

  /** The committed records of `partition` with offsets in [from, to). */
  async read(topic: string, partition: number, from: bigint, to: bigint): Promise<CommittedRecord[]> {
    const committed: CommittedRecord[] = [];
    const open = new Map<bigint, CommittedRecord[]>();
    let next = from;
    while (next < to) {
      const metadata = await this.#consumer.metadata({ topics: [topic] });
      const info = metadata.topics.get(topic);
      const leader = info?.partitions[partition]?.leader;
      if (info === undefined || leader === undefined) throw new SluiceError('kafka_unavailable', `no leader for ${topic}/${partition}`);
      const response = await this.#consumer.fetch({
        node: leader,
        maxWaitTime: 10,
        isolationLevel: FetchIsolationLevels.READ_UNCOMMITTED,
        topics: [
          {
            topicId: info.id,
            partitions: [
              { partition, fetchOffset: next, partitionMaxBytes: 8 * 1024 * 1024, currentLeaderEpoch: -1, lastFetchedEpoch: -1 },
            ],
          },
        ],
      });
      const batches = response.responses.flatMap((t) => t.partitions).find((p) => p.partitionIndex === partition)?.records ?? [];
      if (batches.length === 0) break;
      for (const batch of batches) {
        const last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
        if (last < next) continue;
        next = last + 1n;
        if ((batch.attributes & IS_CONTROL) !== 0) {
          const type = batch.records[0]?.key?.readInt16BE(2);
          const records = open.get(batch.producerId) ?? [];
          open.delete(batch.producerId);
          if (type === COMMIT_MARKER) committed.push(...records);
          continue;
        }
        const records = batch.records
          .map((r) => toCommitted(partition, batch.firstOffset + BigInt(r.offsetDelta), r))
          .filter((r) => r.offset >= from && r.offset < to);
        if ((batch.attributes & IS_TRANSACTIONAL) === 0) committed.push(...records);
        else open.set(batch.producerId, [...(open.get(batch.producerId) ?? []), ...records]);
      }
    }
    return committed.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  }

  async close(): Promise<void> {
    await this.#consumer.close(true);
  }
}

function toCommitted(
  partition: number,
  offset: bigint,
  r: { key: Buffer | null; value: Buffer | null; headers: [Buffer | null, Buffer | null][] },
): CommittedRecord {
  const headers: Record<string, string> = {};
  for (const [k, v] of r.headers) if (k !== null) headers[k.toString('utf8')] = v?.toString('utf8') ?? '';
  return { partition, offset, key: r.key?.toString('utf8') ?? null, value: r.value?.toString('utf8') ?? null, headers };
}
