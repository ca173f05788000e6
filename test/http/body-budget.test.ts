import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { BodyBudget, eventLineCount, MIN_LINE_CHARGE } from '../../src/http/body-budget.ts';
import { SluiceError } from '../../src/errors.ts';
import { nodeJournalLines } from '../support/journal-files.ts';
import { parseResponses, type RawResponse } from '../support/raw-http.ts';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { prng, testSeed } from '../support/seed.ts';
import { mountSmallDisk, type SmallDisk } from '../support/small-disk.ts';
import { startTestApp } from '../support/http-app.ts';
import { eventually, sluiceFixture, startSluice, type TestSluice } from '../support/sluice.ts';

describe('BodyBudget', () => {
  test('takes bodies up to the limit, refuses the one past it with nothing taken, and frees on release', () => {
    const held = { bytes: 0 };
    const budget = new BodyBudget(1000, held);
    const first = budget.take(600);
    budget.take(400);
    expect(held.bytes).toBe(1000);
    let refused: unknown;
    try {
      budget.take(1);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(SluiceError);
    expect((refused as SluiceError).code).toBe('overloaded');
    expect((refused as SluiceError).retryAfter).toBe(1);
    expect((refused as SluiceError).message).toContain('SLUICE_MAX_BODY_BYTES_IN_FLIGHT=1000');
    expect(budget.held).toBe(1000);
    first.release();
    first.release();
    expect(budget.held).toBe(400);
    budget.take(500);
    expect(budget.held).toBe(900);
    // check() asks without taking.
    budget.check(100);
    expect(() => budget.check(101)).toThrow(SluiceError);
    expect(budget.held).toBe(900);
  });

  test('a body larger than the limit passes when nothing else is held, and only then', () => {
    const budget = new BodyBudget(100);
    const large = budget.take(5000);
    expect(() => budget.take(1)).toThrow(SluiceError);
    large.release();
    expect(budget.held).toBe(0);
    budget.take(1);
    expect(() => budget.take(5000)).toThrow(SluiceError);
  });

  test('a kept body stays counted past its release, until the write path lets it go (once)', () => {
    const budget = new BodyBudget(1000);
    const hold = budget.take(700);
    const letGo = hold.keep();
    hold.release();
    expect(budget.held).toBe(700);
    expect(() => budget.take(400)).toThrow(SluiceError);
    letGo();
    letGo();
    expect(budget.held).toBe(0);
  });
});

describe('NDJSON bodies counted by their lines too', () => {
  test('eventLineCount counts the lines the NDJSON parser reads an event from: not blank ones, not white space alone', () => {
    const count = (text: string): number => eventLineCount(new TextEncoder().encode(text));
    expect(count('')).toBe(0);
    expect(count('{}')).toBe(1);
    expect(count('{}\n')).toBe(1);
    expect(count('{}\n{}')).toBe(2);
    expect(count('{}\n\n{}\n')).toBe(2);
    expect(count('{}\r\n\r\n \t\r\n{}\r\n')).toBe(2);
    expect(count(' {}')).toBe(1);
    // The parser's rule (parseEvents): split on LF, trim space, tab and CR, skip what is left empty.
    const parserLines = (text: string): number => text.split('\n').filter((l) => l.replace(/^[ \t\r]+|[ \t\r]+$/g, '') !== '').length;
    const random = prng(testSeed('event line count'));
    const pieces = ['\n', '\r', ' ', '\t', '{}', 'x'];
    for (let i = 0; i < 500; i++) {
      const text = Array.from({ length: Math.floor(random() * 40) }, () => pieces[Math.floor(random() * pieces.length)]).join('');
      expect({ text, lines: count(text) }).toEqual({ text, lines: parserLines(text) });
    }
  });

  test(`a body of many small lines counts as ${MIN_LINE_CHARGE} bytes a line, says so when refused, and gives back what it took`, () => {
    const budget = new BodyBudget(512 * 1024);
    // 400 lines of 33 bytes: 13,200 bytes, counted as 204,800; twice.
    const tiny = [budget.take(13_200, 400), budget.take(13_200, 400)];
    expect(budget.held).toBe(2 * 400 * MIN_LINE_CHARGE);
    let refused: unknown;
    try {
      budget.take(400, 240);
    } catch (err) {
      refused = err;
    }
    expect((refused as SluiceError).code).toBe('overloaded');
    expect((refused as SluiceError).message).toBe(
      `sluice holds 409600 bytes of request bodies and this one of 400 (240 lines, counted as 122880: ${MIN_LINE_CHARGE} bytes a line at least) would pass SLUICE_MAX_BODY_BYTES_IN_FLIGHT=524288; retry shortly`,
    );
    // Lines of more than the minimum count as their bytes.
    const large = budget.take(10_000, 10);
    expect(budget.held).toBe(409_600 + 10_000);
    for (const t of tiny) t.release();
    large.release();
    expect(budget.held).toBe(0);
    // However many lines, a body counts for half the budget at most (its bytes if more): no body the
    // configuration lets pass beside others is made one that passes only alone.
    const many = budget.take(1000, 1000);
    expect(budget.held).toBe(256 * 1024);
    budget.take(256 * 1024, 0);
    many.release();
    expect(budget.held).toBe(256 * 1024);
  });

  test('regression (outside test of issue 11, round 21): tiny-line NDJSON bodies are held by their lines, single JSON events by their bytes', async () => {
    const held = { bytes: 0 };
    const budget = new BodyBudget(256 * 1024, held);
    const release = Promise.withResolvers<void>();
    const seen: number[] = [];
    const t = await startTestApp({
      ingest: {
        async write(envelopes) {
          seen.push(held.bytes);
          await release.promise;
          return envelopes.map((e) => ({ id: null, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: false, durability: 'memory' as const }));
        },
        maxBodyBytes: 1 << 20,
        bodyBudget: budget,
        maxBatchLines: 10_000,
        maxJsonDepth: 64,
        maxLineBytes: 1 << 20,
      },
    });
    const post = async (contentType: string, body: string): Promise<Response> =>
      t.app.request('/v1/events', { method: 'POST', headers: { 'Content-Type': contentType, 'X-Tenant-Id': 'acme' }, body });
    const lines = (prefix: string, n: number): string => Array.from({ length: n }, (_, i) => `{"dedupe_key":"${prefix}${i}","payload":{}}`).join('\n');
    try {
      // Two bodies of 200 lines of ~35 bytes (~7 KB each): counted as 102,400 each while held.
      const first = [post('application/x-ndjson', lines('a', 200)), post('application/x-ndjson', lines('b', 200))];
      await eventually(async () => held.bytes === 2 * 200 * MIN_LINE_CHARGE, 5_000, 'both bodies held by their lines');
      // 150 more such lines would pass the 256-KiB budget though their bytes would not.
      const refused = await post('application/x-ndjson', lines('c', 150));
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { message: string } }).error.message).toContain('(150 lines, counted as 76800');
      // A body of more lines than a batch may have is the parser's to refuse, 413, not a 503 to retry.
      const tooMany = await post('application/x-ndjson', Array.from({ length: 10_001 }, () => '{}').join('\n'));
      expect(tooMany.status).toBe(413);
      expect(((await tooMany.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
      // A single JSON event is its bytes: it fits beside.
      const single = post('application/json', '{"dedupe_key":"d","payload":{}}');
      await eventually(async () => seen.length === 3, 5_000, 'the single event written beside the held bodies');
      // Held beside both bodies' 204,800: its own 31 bytes.
      expect(seen.at(-1)).toBe(204_800 + 31);
      release.resolve();
      for (const f of first) expect((await f).status).toBe(202);
      expect((await single).status).toBe(202);
      expect(held.bytes).toBe(0);
    } finally {
      release.resolve();
      await t.close();
    }
  }, 15_000);
});

const LIMIT = 4096;

/** A keep-alive connection that sends bytes when told and collects the responses it gets. */
class RawConnection {
  readonly #socket: Socket;
  #received = '';
  closed = false;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.#socket = connect(Number(port), hostname);
    this.#socket.on('data', (d) => {
      this.#received += d.toString('latin1');
    });
    this.#socket.on('close', () => {
      this.closed = true;
    });
    this.#socket.on('error', () => {});
  }

  send(data: string): void {
    this.#socket.write(data);
  }

  responses(): RawResponse[] {
    return parseResponses(this.#received);
  }

  async response(n: number): Promise<RawResponse | undefined> {
    await eventually(async () => this.responses().length >= n || this.closed, 10_000, `response ${n}`);
    return this.responses()[n - 1];
  }

  close(): void {
    this.#socket.destroy();
  }
}

function head(length: number | 'chunked', key: string): string {
  const framing = length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`;
  return `POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Tenant-Id: acme\r\nX-Idempotency-Key: ${key}\r\n${framing}\r\n\r\n`;
}

/** A JSON event exactly `bytes` long. */
function eventOf(bytes: number): string {
  const bare = JSON.stringify({ payload: { pad: '' } });
  return JSON.stringify({ payload: { pad: 'x'.repeat(bytes - bare.length) } });
}

async function bodyBytesGauge(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sluice_ingest_body_bytes '));
  return Number(line?.split(' ')[1]);
}

function postEvent(url: string, key: string, body: string): Promise<Response> {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': 'acme', 'X-Idempotency-Key': key },
    body,
  });
}

describe('SLUICE_MAX_BODY_BYTES_IN_FLIGHT on a real socket', () => {
  // sync mode: a write is answered once its outbox insert commits, so a test that blocks inserts
  // holds a whole body in sluice for as long as it likes.
  const f = sluiceFixture({ SLUICE_MAX_BODY_BYTES_IN_FLIGHT: String(LIMIT), SLUICE_MAX_BODY_BYTES: String(LIMIT), SLUICE_SYNC_OUTBOX_WAIT_MS: '60000' });

  const gauge = (): Promise<number> => bodyBytesGauge(f.sluice.url);
  function journalKeys(): string[] {
    return nodeJournalLines(join(f.sluice.journalDir, 'test-node')).map((l) => (JSON.parse(l) as { dedupe_key: string }).dedupe_key);
  }
  async function outboxKeys(): Promise<string[]> {
    return (await f.db.sql<{ dedupe_key: string }[]>`SELECT dedupe_key FROM outbox ORDER BY dedupe_key`).map((r) => r.dedupe_key);
  }
  /** Blocks every insert into the outbox (reads go on) until the returned function is called. */
  async function blockInserts(): Promise<() => Promise<void>> {
    const released = Promise.withResolvers<void>();
    const locked = Promise.withResolvers<void>();
    const tx = f.db.sql.begin(async (sql) => {
      await sql`LOCK TABLE outbox IN SHARE MODE`;
      locked.resolve();
      await released.promise;
    });
    await locked.promise;
    return async () => {
      released.resolve();
      await tx;
    };
  }
  const post = (key: string, body: string): Promise<Response> => postEvent(f.sluice.url, key, body);

  test('a body that does not fit beside those held is refused 503 overloaded, and nothing of it is written', async () => {
    const unblock = await blockInserts();
    let holder: Promise<Response> | undefined;
    let beside: Promise<Response> | undefined;
    try {
      holder = post('holder', eventOf(3000));
      await eventually(async () => (await gauge()) === 3000, 10_000, 'the held body in sluice_ingest_body_bytes');

      const refused = await post('refused', eventOf(2000));
      expect(refused.status).toBe(503);
      expect(refused.headers.get('Retry-After')).toBe('1');
      const error = ((await refused.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('overloaded');
      expect(error.message).toContain(`SLUICE_MAX_BODY_BYTES_IN_FLIGHT=${LIMIT}`);
      expect(error.message).toContain('holds 3000 bytes');

      // A body streamed without a length is taken once it has arrived, and refused the same way.
      const chunked = new RawConnection(f.sluice.url);
      const part = eventOf(1500);
      chunked.send(`${head('chunked', 'refused-chunked')}${part.length.toString(16)}\r\n${part}\r\n0\r\n\r\n`);
      expect((await chunked.response(1))?.status).toBe(503);
      chunked.close();

      // One that fits beside the held body is taken too.
      beside = post('beside', eventOf(500));
      await eventually(async () => (await gauge()) === 3500, 10_000, 'both bodies held');
    } finally {
      await unblock();
    }
    expect((await holder).status).toBe(202);
    expect((await beside).status).toBe(202);
    await eventually(async () => (await gauge()) === 0, 10_000, 'sluice_ingest_body_bytes back to 0');
    expect(journalKeys().sort()).toEqual(['beside', 'holder']);
    expect(await outboxKeys()).toEqual(['beside', 'holder']);
  });

  test('after a refusal the same keep-alive connection serves the next request whole (the refused body is never read as a request)', async () => {
    const conn = new RawConnection(f.sluice.url);
    const unblock = await blockInserts();
    let holder: Promise<Response> | undefined;
    try {
      holder = post('holder-2', eventOf(3000));
      await eventually(async () => (await gauge()) === 3000, 10_000, 'the held body');
      // The refused body looks like a request of its own if it were ever parsed as one.
      const smuggled = `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`;
      const refusedBody = JSON.stringify({ payload: { pad: smuggled.padEnd(2000, ' ') } });
      conn.send(head(refusedBody.length, 'refused-2') + refusedBody);
      expect((await conn.response(1))?.status).toBe(503);
    } finally {
      await unblock();
    }
    expect((await holder).status).toBe(202);
    await eventually(async () => (await gauge()) === 0, 10_000, 'sluice_ingest_body_bytes back to 0');
    const next = eventOf(200);
    conn.send(head(next.length, 'after-refusal') + next);
    const answer = await conn.response(2);
    // Bun may close the connection after a response to an unread body; what it must never do is
    // answer anything else from it.
    if (answer === undefined) expect(conn.closed).toBe(true);
    else expect(answer.status).toBe(202);
    expect(conn.responses().length).toBeLessThanOrEqual(2);
    conn.close();
    expect(journalKeys()).not.toContain('refused-2');
  });

  test('clients that declare bodies and send them slowly, or never, hold nothing: others are served', async () => {
    const slow = Array.from({ length: 8 }, () => new RawConnection(f.sluice.url));
    try {
      for (const [i, c] of slow.entries()) c.send(head(LIMIT - 100, `slow-${i}`) + eventOf(LIMIT - 100).slice(0, 10));
      await Bun.sleep(200);
      expect(await gauge()).toBe(0);
      const res = await post('past-the-slow-ones', eventOf(3000));
      expect(res.status).toBe(202);
    } finally {
      for (const c of slow) c.close();
    }
    expect(journalKeys()).toContain('past-the-slow-ones');
  });

  test('a body of SLUICE_MAX_BODY_BYTES, the whole limit here, is written when nothing else is held', async () => {
    const res = await post('whole-limit', eventOf(LIMIT));
    expect(res.status).toBe(202);
    expect(await gauge()).toBe(0);
  });
});

describe('SLUICE_MAX_BODY_BYTES_IN_FLIGHT in background mode', () => {
  // Background answers before the journal write: the events wait in memory until journaled, and a
  // full journal disk (no preallocated room) keeps them waiting as long as the test likes.
  let disk: SmallDisk;
  const f = {} as { db: TestDatabase; sluice: TestSluice };
  beforeAll(async () => {
    disk = mountSmallDisk(8 * 1024 * 1024);
    f.db = await createTestDatabase({ migrate: false });
    f.sluice = await startSluice({
      DATABASE_URL: f.db.url,
      KAFKA_BROKERS: (await testBrokers()).join(','),
      SLUICE_MAX_BODY_BYTES_IN_FLIGHT: String(LIMIT),
      SLUICE_MAX_BODY_BYTES: String(LIMIT),
      SLUICE_WRITE_MODE: 'background',
      SLUICE_JOURNAL_DIR: disk.dir,
      SLUICE_JOURNAL_PREALLOCATE: 'false',
    });
  }, 120_000);
  afterAll(async () => {
    await f.sluice?.stop();
    await f.db?.drop();
    disk?.unmount();
  });

  const gauge = (): Promise<number> => bodyBytesGauge(f.sluice.url);
  const post = (key: string, body: string): Promise<Response> => postEvent(f.sluice.url, key, body);

  test('an answered write stays counted until it is journaled, so memory waiting for the journal is bounded too', async () => {
    disk.fill(0);
    try {
      const queued = await post('queued', eventOf(3000));
      expect(queued.status).toBe(202);
      expect(await queued.json()).toMatchObject({ dedupe_key: 'queued', durability: 'memory' });
      expect(await gauge()).toBe(3000);
      const refused = await post('refused', eventOf(2000));
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    } finally {
      disk.free();
    }
    await eventually(async () => (await gauge()) === 0, 20_000, 'the queued write journaled');
    const keys = nodeJournalLines(join(disk.dir, 'test-node')).map((l) => (JSON.parse(l) as { dedupe_key: string }).dedupe_key);
    expect(keys).toEqual(['queued']);
    await eventually(async () => (await f.db.sql`SELECT 1 FROM outbox WHERE dedupe_key = 'queued'`).length === 1, 20_000, 'the outbox row');
    expect((await post('after', eventOf(2000))).status).toBe(202);
  }, 60_000);
});

describe('body accounting under random requests', () => {
  const BUDGET = 30_000;
  const MAX_BODY = 20_000;

  test('whatever each request and its write do, every byte taken is given back, and the bytes held never pass the limit', async () => {
    const random = prng(testSeed('body budget accounting'));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const held = { bytes: 0 };
    const budget = new BodyBudget(BUDGET, held);
    let highest = 0;
    const lettingGo: Promise<void>[] = [];
    const t = await startTestApp({
      ingest: {
        // Each write does what one of the write paths can: answers after a while, fails, or (as
        // background does) keeps the body counted past its answer and lets it go later.
        async write(envelopes, body) {
          highest = Math.max(highest, held.bytes);
          const outcome = pick(['answer', 'answer', 'fail', 'keep'] as const);
          await Bun.sleep(random() * 5);
          if (outcome === 'fail') throw new SluiceError('journal_unavailable', 'the journal failed (test)', { retryAfter: 1 });
          if (outcome === 'keep') {
            const letGo = body?.keep();
            lettingGo.push(Bun.sleep(random() * 20).then(() => letGo?.()));
          }
          return envelopes.map((e) => ({ id: null, tenant_id: e.tenant_id, dedupe_key: e.dedupe_key, duplicate: false, durability: 'memory' as const }));
        },
        maxBodyBytes: MAX_BODY,
        bodyBudget: budget,
        maxBatchLines: 100,
        maxJsonDepth: 64,
        maxLineBytes: MAX_BODY,
      },
    });
    const statuses = new Map<number, number>();
    try {
      const request = async (n: number): Promise<void> => {
        const kind = pick(['event', 'event', 'event', 'invalid', 'too-large', 'media-type', 'broken-stream'] as const);
        const declared = random() < 0.5;
        let text = kind === 'too-large' ? eventOf(MAX_BODY + 1 + Math.floor(random() * 1000)) : eventOf(60 + Math.floor(random() * (MAX_BODY - 60)));
        if (kind === 'invalid') text = text.slice(0, -1);
        const headers: Record<string, string> = { 'Content-Type': kind === 'media-type' ? 'text/plain' : 'application/json', 'X-Tenant-Id': 'acme', 'X-Idempotency-Key': `p${n}` };
        let body: string | ReadableStream<Uint8Array> = text;
        if (kind === 'broken-stream') {
          const bytes = new TextEncoder().encode(text);
          body = new ReadableStream<Uint8Array>({
            pull(c) {
              c.enqueue(bytes.subarray(0, bytes.length >> 1));
              c.error(new Error('the client went away (test)'));
            },
          });
        } else if (declared) headers['Content-Length'] = String(Buffer.byteLength(text));
        const res = await t.app.request('/v1/events', { method: 'POST', headers, body });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        await res.arrayBuffer();
        // A refusal is instant: a client that retried at once would spend the whole run inside one
        // large body's answer. Clients wait (Retry-After), here a few milliseconds.
        if (res.status === 503) await Bun.sleep(random() * 10);
      };
      let next = 0;
      await Promise.all(
        Array.from({ length: 24 }, async () => {
          while (next < 600) await request(next++);
        }),
      );
      await Promise.all(lettingGo);
    } finally {
      await t.close();
    }
    expect(held.bytes).toBe(0);
    expect(highest).toBeLessThanOrEqual(BUDGET);
    // The run reached every answer it was meant to: written, refused for the budget, and each error.
    for (const status of [202, 503, 400, 413, 415]) expect(`${status}: ${statuses.get(status) ?? 0}`).not.toBe(`${status}: 0`);
  }, 60_000);
});
