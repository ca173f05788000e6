// The durable minimum: sluice's pipeline with only what its guarantee costs, for a single JSON event, as
// its own process. Raw Bun.serve's work (read the body, JSON.parse it, answer 202), the line appended to
// a preallocated file opened O_DSYNC by group commit (one in flight; writes arriving meanwhile go in the
// next), and the row inserted into the outbox with the project's own multi-row insert: `fast_ack` answers
// once the line is durable and inserts in the background, at most SLUICE_FORWARD_BATCH rows every
// SLUICE_FORWARD_LINGER_MS (sluice's defaults); `sync` answers once its group is durable and inserted.
// With KAFKA_BROKERS and MINIMUM_TOPIC set it also publishes what it inserted, as `serve` does: the rows,
// straight from memory (no claim), in a Kafka transaction with sluice's producer settings, one in
// flight, then marked sent with the project's markPublished, overlapping the next send as sluice does.
// No validation, dedupe index, tenants, quotas, progress records, metrics or log. It is arranged as
// sluice is: a rate it cannot reach, sluice's pipeline cannot either (other arrangements are not ruled
// out). README.md, "Benchmarks".
//
// usage: durable-minimum.ts <fast_ack|sync> <file> [preallocated MiB, 256], DATABASE_URL set; prints
// `listening <url>`.
import { constants, openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { createLogger } from '../../src/log.ts';
import { openDatabase } from '../../src/outbox/db.ts';
import type { NewOutboxRow } from '../../src/core/record.ts';
import { insertRows } from '../../src/outbox/repository.ts';
import { markPublished } from '../../src/outbox/claims.ts';
import { PRODUCER_SETTINGS } from '../../src/processor/publisher.ts';
import { partitionOf } from '../../src/outbox/partition.ts';

const [mode, file, preallocateMiB = '256'] = process.argv.slice(2);
const url = process.env.DATABASE_URL;
if ((mode !== 'fast_ack' && mode !== 'sync') || file === undefined || url === undefined) {
  throw new Error('usage: DATABASE_URL=… durable-minimum.ts <fast_ack|sync> <file> [preallocated MiB]');
}

// sluice's defaults (SLUICE_FORWARD_BATCH, SLUICE_FORWARD_LINGER_MS); a full bench run writes ~100 MB.
const FORWARD_BATCH = 1000;
const LINGER_MS = 10;
const PREALLOCATED = Number(preallocateMiB) * 1024 * 1024;

// Zeroed and synced before listening, as sluice's spare segment is: group commits then overwrite
// blocks the filesystem already holds.
{
  const fd = openSync(file, 'w');
  const zeros = Buffer.alloc(1024 * 1024);
  for (let at = 0; at < PREALLOCATED; at += zeros.length) writeSync(fd, zeros, 0, zeros.length, at);
  fsyncSync(fd);
  closeSync(fd);
}
const segment = await open(file, constants.O_WRONLY | constants.O_DSYNC);
// Two connections: a mark need not wait behind the next insert (sluice's pool has more).
const db = await openDatabase({ url, dataDir: '', pool: 2 }, createLogger({ level: 'warn' }));
await db.sql`SELECT 1`;

interface Waiter {
  row: NewOutboxRow;
  line: string;
  done: () => void;
  failed: (err: unknown) => void;
}

interface Inserted {
  id: string;
  key: string;
  value: string;
}

const brokers = process.env.KAFKA_BROKERS;
const topic = process.env.MINIMUM_TOPIC;
// sluice's producer settings (src/processor/publisher.ts, SLUICE_KAFKA_COMPRESSION's default none): its
// retry delay above all, or a CONCURRENT_TRANSACTIONS answer right after a commit waits the client's 1 s.
const producer =
  brokers === undefined || topic === undefined
    ? undefined
    : new Producer<string, string, string, string>({
        clientId: 'durable-minimum',
        bootstrapBrokers: brokers.split(','),
        serializers: stringSerializers,
        ...PRODUCER_SETTINGS,
        transactionalId: `durable-minimum-${Bun.randomUUIDv7()}`,
        producerId: -1n,
        producerEpoch: -1,
      });
const unpublished: Inserted[] = [];
let publishing = false;

/**
 * One transaction in flight. As sluice's partition task does, a committed batch's mark runs while the
 * next batch is sent and is awaited before that batch commits.
 */
async function publish(): Promise<void> {
  if (producer === undefined || topic === undefined) return;
  publishing = true;
  let marking: Promise<unknown> = Promise.resolve();
  while (unpublished.length > 0) {
    const batch = unpublished.splice(0, FORWARD_BATCH);
    const tx = await producer.beginTransaction();
    await tx.send({ messages: batch.map((r) => ({ topic, key: r.key, value: r.value })) });
    await marking;
    await tx.commit();
    marking = markPublished(db.sql, batch.map((r) => ({ id: r.id, replays: 0 })));
  }
  await marking;
  publishing = false;
}

/** A ceiling that failed must not be read as a slow one: say why and stop (the bench sees it exit). */
function fail(err: unknown): never {
  console.error(`durable minimum failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}

/** Inserts `rows` and, when publishing, hands them to the publisher with their ids. */
async function insert(rows: NewOutboxRow[]): Promise<void> {
  const results = await insertRows(db.sql, rows);
  if (producer === undefined) return;
  results.forEach((r, i) => {
    const row = rows[i];
    if (row !== undefined && !r.duplicate) unpublished.push({ id: r.id, key: `${row.tenant_id}:${row.dedupe_key}`, value: row.payload });
  });
  if (!publishing) publish().catch(fail);
}

let offset = 0;
let queue: Waiter[] = [];
let committing = false;
const unforwarded: NewOutboxRow[] = [];

async function groupCommit(): Promise<void> {
  committing = true;
  while (queue.length > 0) {
    const group = queue;
    queue = [];
    try {
      const bytes = Buffer.from(group.map((w) => w.line).join(''));
      for (let written = 0; written < bytes.length; ) {
        written += (await segment.write(bytes, written, bytes.length - written, offset + written)).bytesWritten;
      }
      offset += bytes.length;
      if (mode === 'sync') await insert(group.map((w) => w.row));
      else for (const w of group) unforwarded.push(w.row);
      for (const w of group) w.done();
    } catch (err) {
      for (const w of group) w.failed(err);
    }
  }
  committing = false;
}

if (mode === 'fast_ack') {
  void (async () => {
    for (;;) {
      await Bun.sleep(LINGER_MS);
      while (unforwarded.length > 0) await insert(unforwarded.splice(0, FORWARD_BATCH)).catch(fail);
    }
  })();
}

const ingestedAt = new Date().toISOString();
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req) {
    const text = await req.text();
    const event = JSON.parse(text) as { dedupe_key: string; payload: unknown };
    const tenant = req.headers.get('x-tenant-id') ?? 'bench';
    const row: NewOutboxRow = {
      tenant_id: tenant,
      dedupe_key: event.dedupe_key,
      partition: partitionOf(tenant, 16),
      topic: topic ?? 'bench',
      payload: JSON.stringify(event.payload),
      headers: {},
      request_id: event.dedupe_key,
      traceparent: undefined,
      ingested_at: ingestedAt,
    };
    await new Promise<void>((done, failed) => {
      queue.push({ row, line: `${text}\n`, done, failed });
      if (!committing) void groupCommit();
    });
    return Response.json({ id: null, dedupe_key: event.dedupe_key, duplicate: false }, { status: 202 });
  },
});
console.log(`listening http://127.0.0.1:${server.port}`);
process.once('SIGTERM', () => {
  void server.stop(true).then(async () => {
    await producer?.close();
    await db.close();
    await segment.close();
    process.exit(0);
  });
});
