import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTopic } from '../support/kafka.ts';
import { testBrokers } from '../support/kafka.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { parseResponses, rawRequest } from '../support/raw-http.ts';
import { eventually } from '../support/sluice.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';
import { writeTenantsFile } from '../support/tenants.ts';
import { nodeJournalLines } from '../support/journal-files.ts';

/**
 * Issue 10's fuzz suite: random and adversarial requests (JSON, NDJSON, headers, content types,
 * framings, Bun's misframed ones too) against a real `sluice serve` child process on real Postgres and a real broker. After
 * every request the process must be alive and answer /healthz, and the response must be one of the
 * documented statuses with the documented body. After the run, every accepted event is in Kafka once,
 * keyed tenant_id:dedupe_key, its value byte-identical to the payload sent, and nothing of a refused
 * request (each has an X-Request-ID of its own) is in the journal, the outbox or Kafka. Runs open and
 * with a tenants file.
 *
 * Bounded for CI: a fixed seed, then one fresh seed (printed; rerun it with SLUICE_FUZZ_SEED=<seed>),
 * SLUICE_FUZZ_RUNS requests each (default 250). A longer run: SLUICE_FUZZ_RUNS=5000.
 */
const FIXED_SEED = 1010;
const RUNS = Number(process.env.SLUICE_FUZZ_RUNS ?? 250);
const MAX_BODY = 65_536;
const run = Bun.randomUUIDv7().slice(-12).replaceAll('-', '');
const DEFAULT_TOPIC = `fz.${run}.events`;
const PROGRESS_TOPIC = `fz.${run}.progress`;
/** Valid topics that collide with nothing (no `.`/`_` twins among them). */
const OWN_TOPICS = [`fz-${run}-a`, `fz-${run}-b`];

const STATUS_OF: Record<string, number> = {
  invalid_json: 400,
  validation_failed: 400,
  request_incomplete: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  header_too_large: 431,
  backlog_full: 429,
};

interface Sent {
  tenant: string;
  dedupeKey: string | undefined;
  topic: string | undefined;
  payload: string;
}

/** A generated event; the tenant is filled in when the request is sent, so that every request (a shrink's rerun too) has tenants of its own. */
type EventOf = (tenant: string) => { text: string; sent: Sent };

interface Case {
  events: EventOf[];
  format: 'json' | 'ndjson' | 'garbage';
  garbage: Uint8Array;
  contentType: string | undefined;
  headers: Record<string, string>;
  transport: 'fetch' | 'http10' | 'chunked' | 'abort' | 'trailer' | 'extra';
  /** Instead of all the above: send an accepted event's tenant and key again (with another payload); this picks which. */
  repeat: number | undefined;
  /** With a tenants file: the token of the request's own tenant, another tenant's, an unknown one, or none. */
  auth: 'own' | 'other' | 'unknown' | 'none';
}

const ADVERSARIAL_PAYLOADS = [
  '{"big":1e400,"tiny":1e-400,"n":9007199254740993}',
  '{"__proto__":{"polluted":true}}',
  '{"a":1,"a":2}',
  '{ "sp" :\t[ 1 ,2 ] }',
  '{\n"multi":\r\n"line"\n}',
  '{"s":"\\u0000\\ud800\\udfff\\u001b"}',
  '{"constructor":{"prototype":{}}}',
  '{}',
];
const NOT_OBJECTS = ['[]', '1', '"s"', 'null', 'true', '{', '{"a":}', ''];
const HOSTILE_TOPICS = ['.', '..', '__consumer_offsets', '__x', DEFAULT_TOPIC.replaceAll('.', '_'), PROGRESS_TOPIC, PROGRESS_TOPIC.replaceAll('.', '_'), 'has space', 'x'.repeat(250), ''];
const GOOD_HEADER_NAMES = ['source', 'x-b3', 'Trace-Id', 'é'];
const HOSTILE_HEADER_NAMES = ['tenant_id', 'Tenant-ID ', 'dedupe-key', 'replay', '__proto__', 'a\nb', '\u001b', ''];

/** Mostly `good`, sometimes `hostile`: a request with many hostile parts is refused for the first one. */
function mostly<T>(good: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ weight: 12, arbitrary: good }, { weight: 1, arbitrary: hostile });
}

function payloadArb(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }).map((o) => JSON.stringify(o)) },
    { weight: 4, arbitrary: fc.constantFrom(...ADVERSARIAL_PAYLOADS) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }).map((d) => `{"d":${'['.repeat(d)}${']'.repeat(d)}}`) },
    { weight: 1, arbitrary: fc.constantFrom(...NOT_OBJECTS) },
  );
}

function eventArb(): fc.Arbitrary<EventOf> {
  return fc
    .record({
      payload: payloadArb(),
      dedupeKey: fc.option(mostly(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 300 })), { nil: undefined }),
      topic: fc.option(mostly(fc.constantFrom(...OWN_TOPICS), fc.constantFrom(...HOSTILE_TOPICS)), { nil: undefined }),
      headers: fc.option(
        fc.dictionary(
          mostly(fc.constantFrom(...GOOD_HEADER_NAMES), fc.constantFrom(...HOSTILE_HEADER_NAMES)),
          mostly(fc.string({ maxLength: 6 }), fc.constantFrom('x\u0000', 1 as unknown as string, 'y'.repeat(5_000))),
          { maxKeys: 3 },
        ),
        { nil: undefined },
      ),
      bodyTenant: mostly(fc.constantFrom('none', 'same'), fc.constantFrom('other', 'invalid')),
      extra: mostly(fc.constant(0), fc.constant(1)),
      order: fc.boolean(),
    })
    .map((e) => (tenant: string) => {
      const members: string[] = [`"payload":${e.payload}`];
      if (e.dedupeKey !== undefined) members.push(`"dedupe_key":${JSON.stringify(e.dedupeKey)}`);
      if (e.topic !== undefined) members.push(`"topic":${JSON.stringify(e.topic)}`);
      if (e.headers !== undefined) members.push(`"headers":${JSON.stringify(e.headers)}`);
      if (e.bodyTenant !== 'none') {
        const claim = e.bodyTenant === 'same' ? tenant : e.bodyTenant === 'other' ? `${tenant}-other` : `${tenant} bad`;
        members.push(`"tenant_id":${JSON.stringify(claim)}`);
      }
      if (e.extra === 1) members.push('"payloads":{}');
      if (e.order) members.reverse();
      return { text: `{${members.join(',')}}`, sent: { tenant, dedupeKey: e.dedupeKey, topic: e.topic, payload: e.payload } };
    });
}

function caseArb(): fc.Arbitrary<Case> {
  return fc.record({
    events: fc.array(eventArb(), { minLength: 1, maxLength: 4 }),
    format: mostly(fc.constantFrom('json', 'ndjson'), fc.constant('garbage')),
    garbage: fc.uint8Array({ maxLength: 64 }),
    contentType: mostly(fc.constant('matching'), fc.constantFrom('application/json', 'application/ndjson', 'APPLICATION/JSON; charset=utf-8', 'text/plain', undefined)),
    headers: fc.record(
      {
        'X-Tenant-Id': mostly(fc.constant('own'), fc.constantFrom('own bad', 'x'.repeat(200))),
        'X-Idempotency-Key': fc.string({ minLength: 1, maxLength: 8 }).map((s) => s.replace(/[^\x21-\x7e]/g, 'k')),
        traceparent: fc.constantFrom('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'garbage'),
      },
      { requiredKeys: [] },
    ),
    transport: mostly(fc.constant('fetch'), fc.constantFrom('http10', 'chunked', 'abort', 'trailer', 'extra')),
    repeat: fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() }),
    auth: mostly(fc.constant('own' as const), fc.constantFrom('other' as const, 'unknown' as const, 'none' as const)),
  });
}

/** One request as sent: body bytes, the headers that go with it, and what each event sent. */
function materialize(c: Case, tenant: string, auth: Record<string, string>): { body: Uint8Array; headers: Record<string, string>; sent: Sent[] } {
  const events = (c.format === 'ndjson' ? c.events : c.events.slice(0, 1)).map((e) => e(tenant));
  const text = events.map((e) => e.text).join('\n');
  const body = c.format === 'garbage' ? c.garbage : new TextEncoder().encode(text);
  const headers: Record<string, string> = { ...c.headers, ...auth };
  if (headers['X-Tenant-Id'] !== undefined) headers['X-Tenant-Id'] = headers['X-Tenant-Id'].replace('own', tenant);
  const contentType = c.contentType === 'matching' ? (c.format === 'ndjson' ? 'application/x-ndjson' : 'application/json') : c.contentType;
  if (contentType !== undefined) headers['Content-Type'] = contentType;
  return { body, headers, sent: events.map((e) => e.sent) };
}

function rawBytes(c: Case, body: Uint8Array, headers: Record<string, string>): Uint8Array {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  const head = (extra: string[]): string =>
    [c.transport === 'http10' ? 'POST /v1/events HTTP/1.0' : 'POST /v1/events HTTP/1.1', ...(c.transport === 'http10' ? [] : ['Host: fuzz']), ...lines, ...extra, '', ''].join('\r\n');
  if (c.transport === 'chunked' || c.transport === 'trailer') {
    const h = new TextEncoder().encode(head(['Transfer-Encoding: chunked']));
    const size = new TextEncoder().encode(`${body.length.toString(16)}\r\n`);
    const end = new TextEncoder().encode(c.transport === 'trailer' ? '\r\n0\r\nX-Trailer: 1\r\n\r\n' : '\r\n0\r\n\r\n');
    return Buffer.concat(body.length > 0 ? [h, size, body, end] : [h, new TextEncoder().encode(c.transport === 'trailer' ? '0\r\nX-Trailer: 1\r\n\r\n' : '0\r\n\r\n')]);
  }
  const h = new TextEncoder().encode(head([`Content-Length: ${body.length}`]));
  if (c.transport === 'extra') return Buffer.concat([h, body, new TextEncoder().encode('GARBAGE\r\n\r\n')]);
  // An aborted request stops half-way through its body (or its headers, for an empty one).
  if (c.transport === 'abort') return Buffer.concat([h, body]).subarray(0, h.length + Math.floor(body.length / 2) - (body.length === 0 ? 2 : 0));
  return Buffer.concat([h, body]);
}

interface Answer {
  status: number;
  body: string;
}

async function send(url: string, c: Case, body: Uint8Array, headers: Record<string, string>): Promise<Answer | undefined> {
  if (c.transport === 'fetch') {
    const res = await fetch(`${url}/v1/events`, { method: 'POST', headers, body });
    return { status: res.status, body: await res.text() };
  }
  const bytes = rawBytes(c, body, headers);
  if (c.transport === 'abort') {
    await rawRequest(url, bytes, { abort: true });
    return undefined;
  }
  // Bun 1.4.5 answers these framings itself (README, "Bun's HTTP framing"): a bare 400 or 505, or
  // nothing. Such a request counts as refused, so nothing of it may be written.
  const bunFraming = c.transport === 'trailer' || c.transport === 'extra';
  const received = await rawRequest(url, bytes, bunFraming ? { waitMs: 500 } : { responses: 1, waitMs: 5_000 });
  const [res] = parseResponses(received);
  if (bunFraming && (res === undefined || (res.body === '' && res.status >= 400))) return undefined;
  if (res === undefined) throw new Error(`no response to a ${c.transport} request: ${JSON.stringify(received.slice(0, 200))}`);
  return res;
}

type Result = { id: string | null; tenant_id: string; dedupe_key: string; duplicate: boolean; durability: string };

/** Fuzzes one sluice: open (the claims name a fresh tenant per request) or with a tenants file (bearer tokens). */
function fuzzSuite(mode: 'open' | 'tenants'): void {
  describe(`fuzz: hostile requests against a running sluice (${mode})`, () => {
    let db: TestDatabase;
    let brokers: string[];
    let sluice: SpawnedSluice;
    let journalDir: string;
    /** (tenant:dedupe_key) → what Kafka must hold for it: the first accepted payload, its topic and outbox id. */
    const ledger = new Map<string, { payload: string; topic: string; id: string | null; tenant: string; dedupeKey: string }>();
    /** X-Request-ID of every request that was answered 2xx: nothing of any other may be anywhere. */
    const acceptedRequests = new Set<string>();
    let requests = 0;
    const FILE_TENANTS = ['alpha', 'beta'];
    const token = (tenant: string): string => `token-${tenant}-${run}`;
    /** A fresh tenant per request in open mode (so its rows are its own); one of the file's otherwise. */
    const tenantOf = (n: number): string => (mode === 'open' ? `r${n}` : (FILE_TENANTS[n % FILE_TENANTS.length] ?? 'alpha'));
    const otherTenant = (tenant: string): string => FILE_TENANTS.find((t) => t !== tenant) ?? tenant;
    function authHeaders(tenant: string, auth: Case['auth']): Record<string, string> {
      if (mode === 'open' || auth === 'none') return {};
      return { Authorization: `Bearer ${auth === 'own' ? token(tenant) : auth === 'other' ? token(otherTenant(tenant)) : 'unknown-token'}` };
    }
    /** How the requests were answered, for the summary line: a generator that stops reaching the accept path shows here. */
    const answers = new Map<string, number>();

    beforeAll(async () => {
      db = await createTestDatabase({ migrate: false });
      brokers = await testBrokers();
      journalDir = mkdtempSync(join(tmpdir(), 'sluice-fuzz-'));
      const tenantsFile = join(journalDir, 'tenants.json');
      if (mode === 'tenants') writeTenantsFile(tenantsFile, Object.fromEntries(FILE_TENANTS.map((t) => [t, { tokens: [token(t)] }])));
      sluice = await spawnSluice({
        ...(mode === 'tenants' ? { SLUICE_TENANTS_FILE: tenantsFile } : {}),
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers.join(','),
        SLUICE_PORT: '0',
        SLUICE_JOURNAL_DIR: journalDir,
        SLUICE_NODE_ID: 'fuzz',
        SLUICE_KAFKA_TOPIC: DEFAULT_TOPIC,
        SLUICE_PROGRESS_TOPIC: PROGRESS_TOPIC,
        SLUICE_TRANSACTIONAL_ID_PREFIX: `fz-${run}-${mode}`,
        SLUICE_MAX_BODY_BYTES: String(MAX_BODY),
        SLUICE_POLL_MS: '20',
      });
    }, 120_000);

    afterAll(async () => {
      sluice?.proc.kill('SIGTERM');
      await sluice?.proc.exited;
      await db?.drop();
      rmSync(journalDir, { recursive: true, force: true });
    });

    /** A write repeated under an accepted tenant and key: 200, the original id, and Kafka keeps the first payload. */
    async function checkRepeat(pick: number): Promise<void> {
      const originals = [...ledger.values()];
      const original = originals[pick % originals.length];
      if (original === undefined) return;
      const requestId = `fzreq-${mode}-${++requests}`;
      const res = await fetch(`${sluice.url}/v1/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': original.tenant, 'X-Request-ID': requestId, ...authHeaders(original.tenant, 'own') },
        body: JSON.stringify({ dedupe_key: original.dedupeKey, payload: { again: true }, topic: original.topic }),
      });
      acceptedRequests.add(requestId);
      const outcome = `${res.status} repeat`;
      answers.set(outcome, (answers.get(outcome) ?? 0) + 1);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ id: original.id, tenant_id: original.tenant, dedupe_key: original.dedupeKey, duplicate: true, durability: 'outbox' });
    }

    async function checkOne(c: Case): Promise<void> {
      if (c.repeat !== undefined && ledger.size > 0) {
        await checkRepeat(c.repeat);
        return;
      }
      const n = ++requests;
      const tenant = tenantOf(n);
      const requestId = `fzreq-${mode}-${n}`;
      const { body: sentBody, headers, sent } = materialize(c, tenant, { ...authHeaders(tenant, c.auth), 'X-Request-ID': requestId });
      const answer = await send(sluice.url, c, sentBody, headers);
      expect(sluice.proc.exitCode).toBeNull();
      expect((await fetch(`${sluice.url}/healthz`)).status).toBe(200);
      const outcome = answer === undefined ? `refused (${c.transport})` : answer.status >= 400 ? `${answer.status} ${/"code":"(\w+)"/.exec(answer.body)?.[1]}` : String(answer.status);
      answers.set(outcome, (answers.get(outcome) ?? 0) + 1);
      if (answer === undefined) return;
      expect(answer.body.length).toBeLessThan(16_384);
      const body = JSON.parse(answer.body) as Record<string, unknown>;
      if (answer.status >= 400) {
        const error = body.error as { code: string; message: string; details?: unknown[]; details_total?: number };
        expect(Object.keys(body)).toEqual(['error']);
        expect(STATUS_OF[error.code]).toBe(answer.status);
        expect(typeof error.message).toBe('string');
        if (error.details !== undefined) expect(error.details.length).toBeLessThanOrEqual(20);
        return;
      }
      expect([200, 202]).toContain(answer.status);
      acceptedRequests.add(requestId);
      const ndjson = 'results' in body;
      const results = (ndjson ? body.results : [body]) as Result[];
      expect(results.length).toBe(sent.length);
      if (!ndjson) expect(answer.status).toBe(results[0]?.duplicate === true ? 200 : 202);
      results.forEach((r, i) => {
        const event = sent[i];
        if (event === undefined) throw new Error('a result without an event');
        if (mode === 'open') expect(r.tenant_id.startsWith(tenant)).toBe(true);
        // A token decides the tenant: another tenant's token with no claim naming this one writes as its owner.
        else expect(r.tenant_id).toBe(c.auth === 'other' ? otherTenant(tenant) : tenant);
        if (event.dedupeKey !== undefined) expect(r.dedupe_key).toBe(event.dedupeKey);
        const key = `${r.tenant_id}:${r.dedupe_key}`;
        if (r.duplicate) {
          expect(ledger.has(key)).toBe(true);
        } else {
          expect(ledger.has(key)).toBe(false);
          ledger.set(key, { payload: event.payload, topic: event.topic ?? DEFAULT_TOPIC, id: r.id, tenant: r.tenant_id, dedupeKey: r.dedupe_key });
        }
      });
    }

    async function fuzz(seed: number): Promise<void> {
      await fc.assert(fc.asyncProperty(caseArb(), checkOne), { seed, numRuns: RUNS });
    }

    test(`fixed seed ${FIXED_SEED}`, async () => {
      await fuzz(FIXED_SEED);
    }, 300_000);

    test('a fresh seed (printed)', async () => {
      const seed = Number(process.env.SLUICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
      console.error(JSON.stringify({ level: 'info', msg: 'fuzz seed', seed, runs: RUNS, rerun: `SLUICE_FUZZ_SEED=${seed} bun test test/fuzz` }));
      await fuzz(seed);
    }, 300_000);

    test('afterwards: each accepted event in Kafka once, byte for byte; nothing of a refused request anywhere', async () => {
      expect(ledger.size).toBeGreaterThan(0);
      await eventually(async () => {
        const [r] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM outbox WHERE status = 'pending'`;
        return r?.n === 0;
      }, 60_000, 'every outbox row published');
      const rows = await db.sql<{ tenant_id: string; dedupe_key: string; status: string; request_id: string }[]>`
        SELECT tenant_id, dedupe_key, status, request_id FROM outbox`;
      expect(rows.filter((r) => r.status !== 'sent')).toEqual([]);
      expect(rows.map((r) => `${r.tenant_id}:${r.dedupe_key}`).sort()).toEqual([...ledger.keys()].sort());
      expect(rows.filter((r) => !acceptedRequests.has(r.request_id))).toEqual([]);

      const byTopic = new Map<string, number>();
      for (const { topic } of ledger.values()) byTopic.set(topic, (byTopic.get(topic) ?? 0) + 1);
      for (const [topic, expected] of byTopic) {
        // Both suites write to the same topics: each checks the records of its own requests.
        const records = (await readTopic(brokers, topic, { expected, graceMs: 500 })).filter((r) => r.headers.request_id?.startsWith(`fzreq-${mode}-`));
        const seen = new Map<string, number>();
        for (const r of records) {
          seen.set(r.key, (seen.get(r.key) ?? 0) + 1);
          const want = ledger.get(r.key);
          expect({ key: r.key, topic, value: r.value }).toEqual({ key: r.key, topic: want?.topic ?? '(not accepted)', value: want?.payload ?? '(not accepted)' });
          expect(r.headers.tenant_id).toBe(r.key.slice(0, r.key.indexOf(':')));
          expect(acceptedRequests.has(r.headers.request_id ?? '')).toBe(true);
        }
        expect([...seen.values()].every((n) => n === 1)).toBe(true);
        expect(seen.size).toBe(expected);
      }

      // Every journal line comes from an accepted request (in sync mode a duplicate is journaled too).
      const journalRequests = new Set<string>();
      const nodeDir = join(journalDir, 'fuzz');
      for (const line of nodeJournalLines(nodeDir)) journalRequests.add((JSON.parse(line) as { request_id: string }).request_id);
      expect([...journalRequests].filter((id) => !acceptedRequests.has(id))).toEqual([]);
      expect(journalRequests.size).toBeGreaterThan(0);
      expect(sluice.logLines().filter((l) => /"level":"error"|uncaught|unhandled/.test(l))).toEqual([]);
      console.error(JSON.stringify({ level: 'info', msg: 'fuzz summary', mode, requests, accepted_events: ledger.size, answers: Object.fromEntries(answers) }));
    }, 120_000);
  });
}

fuzzSuite('open');
fuzzSuite('tenants');
