import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin, ConfigResourceTypes, Producer, stringSerializers } from '@platformatic/kafka';
import { createLogger } from '../../src/log.ts';
import { decodeProgress, encodeProgress, ensureProgressTopic, progressKey, ProgressReader } from '../../src/processor/progress.ts';
import { startRole } from '../../src/roles/start.ts';
import { readTopic, testBrokers } from '../support/kafka.ts';
import { createTopic, fillOutbox, processConfig } from '../support/outbox-load.ts';
import { createTestDatabase, quietLog } from '../support/postgres.ts';
import { eventually } from '../support/sluice.ts';

describe('progress record', () => {
  test('encodes outbox ids with their replay counts and decodes them back', () => {
    const refs = [
      { id: '1', replays: 0 },
      { id: '9007199254740993', replays: 2 },
    ];
    expect(encodeProgress(refs)).toBe('1.0,9007199254740993.2');
    expect(decodeProgress(encodeProgress(refs))).toEqual(refs);
    expect(decodeProgress('')).toEqual([]);
    expect(() => decodeProgress('1.0,x')).toThrow('malformed progress record entry "x"');
  });

  test('keys carry the transactional id prefix and the outbox identity, so no outbox reads another', () => {
    expect(progressKey('eu-west', 7, '0b7f5c1e-0000-4000-8000-000000000001')).toBe('eu-west-p7@0b7f5c1e-0000-4000-8000-000000000001');
  });

});

describe('reading the last committed progress record from a real broker', () => {
  let brokers: string[];
  const topic = `progress.${Bun.randomUUIDv7()}`;
  const prefix = `pr-${Bun.randomUUIDv7()}`;
  const outbox = crypto.randomUUID();
  let producer: Producer<string, string, string, string>;

  beforeAll(async () => {
    brokers = await testBrokers();
    await ensureProgressTopic(brokers, topic, 4, 'test');
    producer = new Producer<string, string, string, string>({
      clientId: 'progress-test',
      bootstrapBrokers: brokers,
      idempotent: true,
      transactionalId: `${prefix}-writer`,
      serializers: stringSerializers,
      retries: 20,
      retryDelay: 10,
    });
  }, 60_000);

  afterAll(async () => {
    await producer?.close();
  });

  async function write(partition: number, key: string, value: string, commit: boolean): Promise<void> {
    const tx = await producer.beginTransaction();
    await tx.send({ messages: [{ topic, partition, key, value }] });
    if (commit) await tx.commit();
    else await tx.abort();
  }

  test('the newest committed record wins; aborted ones and other prefixes are ignored', async () => {
    // Several aborted transactions of one producer in one fetch: the case @platformatic/kafka's
    // read_committed stream lets through.
    await write(0, progressKey(prefix, 0, outbox), '10.0', true);
    await write(0, progressKey(prefix, 0, outbox), '11.0', false);
    await write(0, progressKey(prefix, 0, outbox), '12.0', false);
    await write(1, progressKey(prefix, 1, outbox), '1.0,2.0', true);
    await write(1, progressKey(prefix, 1, outbox), '3.0,4.1', true);
    await write(1, progressKey(prefix, 1, outbox), '5.0', false);
    await write(1, progressKey('someone-else', 1, outbox), '99.0', true);
    for (let i = 0; i < 30; i++) await write(2, progressKey('someone-else', 2, outbox), `${i}.0`, true);
    await write(3, progressKey(prefix, 3, outbox), '7.0', true);
    for (let i = 0; i < 40; i++) await write(3, progressKey('someone-else', 3, outbox), `${i}.0`, i % 2 === 0);

    // The same prefix from another outbox (a database rebuilt after a disaster), and a key written
    // before keys named their outbox: neither is this outbox's progress.
    const rebuilt = crypto.randomUUID();
    await write(0, progressKey(prefix, 0, rebuilt), '13.0', true);
    await write(1, `${prefix}-p1`, '6.0', true);
    const warnings: Record<string, unknown>[] = [];
    const log = { ...quietLog, warn: (msg: string, fields?: Record<string, unknown>) => warnings.push({ msg, ...fields }) };
    const reader = new ProgressReader({ brokers, topic, transactionalIdPrefix: prefix, outboxIdentity: outbox, clientId: 'test', log });
    try {
      const [p0, p1, p2, p3] = await Promise.all([0, 1, 2, 3].map((p) => reader.read(p)));
      expect(p0).toEqual([{ id: '10', replays: 0 }]);
      expect(p1).toEqual([
        { id: '3', replays: 0 },
        { id: '4', replays: 1 },
      ]);
      expect(p2).toEqual([]);
      // Found past a window of 16 and one of 64 offsets of another deployment's records.
      expect(p3).toEqual([{ id: '7', replays: 0 }]);
      expect(warnings).toEqual([
        expect.objectContaining({ msg: 'progress record of another outbox ignored', partition: 0, other_outbox: rebuilt }),
        expect.objectContaining({ msg: 'progress record of another outbox ignored', partition: 1, key: `${prefix}-p1` }),
      ]);
    } finally {
      await reader.close();
    }
  }, 60_000);
});

describe('the progress topic on a real broker', () => {
  let brokers: string[];
  let admin: Admin;
  const partitions = async (topic: string): Promise<number | undefined> => (await admin.metadata({ topics: [topic], forceUpdate: true })).topics.get(topic)?.partitionsCount;

  beforeAll(async () => {
    brokers = await testBrokers();
    admin = new Admin({ clientId: 'progress-topic-test', bootstrapBrokers: brokers });
  }, 60_000);

  afterAll(async () => {
    await admin?.close();
  });

  test('is created compacted with one partition per outbox partition and grown when they are raised, also when instances of both counts race to create it', async () => {
    // A deployment's instances start at once on a cluster without the topic, one already configured
    // with more partitions: whichever creates it, it ends with the larger count. (When one of the
    // others wins, the larger one's create is refused as existing: the path that once kept 4.)
    // Regression (CI): the larger one grew the topic and returned before the metadata showed it, so
    // 4 was read right after, in about one race in ten: raced many times here.
    for (let round = 0; round < 12; round++) {
      const topic = `progress-made.${Bun.randomUUIDv7()}`;
      await Promise.all([4, 4, 4, 4, 6].map((count, i) => ensureProgressTopic(brokers, topic, count, `instance-${i}`)));
      expect({ round, partitions: await partitions(topic) }).toEqual({ round, partitions: 6 });
      if (round > 0) continue;
      const [described] = await admin.describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['cleanup.policy'] }] });
      expect(described?.configs.map((c) => [c.name, c.value])).toEqual([['cleanup.policy', 'compact']]);

      // Found, its cleanup policy is told, for the processor to warn when it does not compact.
      expect(await ensureProgressTopic(brokers, topic, 8, 'raised')).toEqual({ cleanupPolicy: 'compact' });
      expect(await partitions(topic)).toBe(8);
    }
  }, 120_000);

  test('regression: instances raising the count at once all succeed, whichever grows it (the others are refused as invalid by the broker)', async () => {
    const topic = `progress-raised.${Bun.randomUUIDv7()}`;
    await ensureProgressTopic(brokers, topic, 4, 'first');
    await Promise.all([6, 6, 8, 6].map((count, i) => ensureProgressTopic(brokers, topic, count, `instance-${i}`)));
    expect(await partitions(topic)).toBe(8);
  }, 60_000);

  test('a stop ends the wait at once, saying so, and grows nothing', async () => {
    const topic = `progress-stopped.${Bun.randomUUIDv7()}`;
    await ensureProgressTopic(brokers, topic, 4, 'first');
    await expect(ensureProgressTopic(brokers, topic, 8, 'stopping', AbortSignal.abort())).rejects.toMatchObject({
      code: 'shutting_down',
      message: `stopped while waiting for the progress topic "${topic}" to show 1 partitions`,
    });
    expect(await partitions(topic)).toBe(4);
  }, 60_000);
});

describe('a progress topic made by hand', () => {
  test('regression (outside test): one that deletes by retention is grown and used, and the processor warns that it is not compacted', async () => {
    const db = await createTestDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'sluice-progress-'));
    const brokers = await testBrokers();
    const admin = new Admin({ clientId: 'progress-by-hand-test', bootstrapBrokers: brokers });
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ level: 'warn', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    try {
      const topic = `by-hand.${Bun.randomUUIDv7()}`;
      await createTopic(brokers, topic);
      await fillOutbox(db, { topic, records: 40, tenants: 20, partitions: 4 });
      const tenantsFile = join(dir, 'tenants.json');
      writeFileSync(tenantsFile, JSON.stringify({}));
      const config = processConfig(db, brokers, { tenantsFile, partitions: 4, prefix: 'by-hand' });
      const progressTopic = config.processor.progressTopic;
      await admin.createTopics({ topics: [progressTopic], partitions: 1, replicas: 1 });

      const running = await startRole('process', config, log);
      try {
        expect((await readTopic(brokers, topic, { expected: 40, graceMs: 0 })).length).toBe(40);
        await eventually(async () => lines.some((l) => l.topic === progressTopic), 10_000, 'the warning');
        expect(lines).toEqual([
          expect.objectContaining({
            level: 'warn',
            msg: expect.stringContaining('progress topic does not keep the last record of each partition'),
            topic: progressTopic,
            cleanup_policy: 'delete',
          }),
        ]);
        expect((await admin.metadata({ topics: [progressTopic], forceUpdate: true })).topics.get(progressTopic)?.partitionsCount).toBe(4);
      } finally {
        await running.shutdown('test');
      }
    } finally {
      await admin.close();
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
