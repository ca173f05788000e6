import { Hono } from 'hono';
import { SluiceError } from '../errors.ts';
import type { Envelope } from '../core/record.ts';
import type { HeldBody, WriteResult } from '../ingest/write-path.ts';
import type { Tenants } from '../tenants.ts';
import { createAdminApp, type AdminDeps } from './admin-app.ts';
import { errorResponse, plainErrorResponse, statusOf } from './error-response.ts';
import { checkHeaderLimits } from './header-limits.ts';
import { authenticateIngest } from './ingest-auth.ts';
import { addOpsRoutes, type OpsDeps } from './ops-routes.ts';
import { mediaType, parseEvents, validTraceparent } from './parse-events.ts';
import { readBody } from './read-body.ts';
import type { BodyBudget, BodyHold } from './body-budget.ts';
import { ThrottledLog } from '../log.ts';
import { sluiceTopics, topicProblem } from '../core/topic-rule.ts';
import { MIXED_TENANTS, UNKNOWN_TENANT } from '../tenant-labels.ts';

/** What the ingest route needs; a role without ingest (process) has no /v1/events. */
export interface IngestDeps {
  /** `body` is the request's count in the body budget: a write path that holds the events past the answer keeps it. */
  write(envelopes: Envelope[], body?: HeldBody): Promise<WriteResult[]>;
  maxBodyBytes: number;
  /** The request bodies held at once (SLUICE_MAX_BODY_BYTES_IN_FLIGHT); past it 503 `overloaded`. */
  bodyBudget: BodyBudget;
  maxBatchLines: number;
  maxJsonDepth: number;
  maxLineBytes: number;
}

export interface AppDeps extends OpsDeps {
  ingest?: IngestDeps | undefined;
  /** SLUICE_KAFKA_TOPIC: the topic of events whose tenant has none of its own. */
  defaultTopic: string;
  /** Sluice's own progress topic: no event may name it (or a topic colliding with it). */
  progressTopic: string;
  tenants: Tenants;
  /** The admin API's parts; undefined (SLUICE_ADMIN_TOKEN unset) = every /admin path is 404. */
  admin?: AdminDeps | undefined;
}

type Env = { Variables: { requestId: string; tenant: string } };

const REQUEST_ID = /^[\x21-\x7e]{1,256}$/;

export function createApp(deps: AppDeps): Hono<Env> {
  const { log, metrics } = deps;
  // Per failure code, one line each 10 s: a full disk fails every request, and says so once.
  const failures = new ThrottledLog(log, 10_000);
  const app = new Hono<Env>();
  const topics = sluiceTopics(deps.progressTopic, deps.defaultTopic, deps.tenants);

  app.onError((err, c) => errorResponse(c, err, log));
  app.notFound((c) => errorResponse(c, new SluiceError('not_found', `no route for ${c.req.method} ${c.req.path}`), log));

  const ingestDeps = deps.ingest;
  /**
   * One setImmediate for every request that reaches it in the same turn: each waits for the next
   * turn all the same, without a timer and a promise of its own. Cleared before it resolves, so a
   * request arriving while the waiters run schedules the following turn.
   */
  let nextTurn: Promise<void> | undefined;
  const afterThisTurn = (): Promise<void> =>
    (nextTurn ??= new Promise<void>((resolve) => {
      setImmediate(() => {
        nextTurn = undefined;
        resolve();
      });
    }));
  // Made once, not per request: they close over this app's dependencies only.
  const topicFor = (t: string): string => deps.tenants.policy(t).topic ?? deps.defaultTopic;
  const tenantTopicProblem = (t: string, topic: string): string | undefined => deps.tenants.topicProblem(t, topic);
  const topicInvalid = (topic: string): string | undefined => topicProblem(topic, topics);
  const countTenantEvents = (tenant: string, result: 'accepted' | 'duplicate', n: number): void =>
    metrics.ingestTally.events(deps.tenants.metricLabel(tenant), result, n);
  const ingest = ingestDeps === undefined ? undefined : async function ingest(req: Request): Promise<Response> {
    const started = performance.now();
    const { headers } = req;
    const clientRequestId = headers.get('X-Request-ID');
    const requestId = clientRequestId !== null && REQUEST_ID.test(clientRequestId) ? clientRequestId : Bun.randomUUIDv7();
    let tenant = UNKNOWN_TENANT;
    let response: Response;
    let hold: BodyHold | undefined;
    try {
      checkHeaderLimits(headers);
      if (deps.draining()) throw new SluiceError('shutting_down', 'sluice is shutting down; retry on another node', { retryAfter: 1 });
      const tokenTenant = authenticateIngest(headers, deps.tenants);
      tenant = tokenTenant ?? tenant;
      const contentType = headers.get('Content-Type');
      const format = mediaType(contentType);
      if (format === undefined) {
        throw new SluiceError('unsupported_media_type', 'Content-Type must be application/json or application/x-ndjson', {
          details: [{ message: `got ${contentType ?? 'no Content-Type'}` }],
        });
      }
      const read = await readBody(req, ingestDeps.maxBodyBytes, undefined, ingestDeps.bodyBudget, format === 'ndjson' ? ingestDeps.maxBatchLines : undefined);
      hold = read.hold;
      const { body } = read;
      const envelopes = parseEvents(body, format, {
        headers,
        requestId,
        clientRequestId: requestId === clientRequestId,
        traceparent: validTraceparent(headers.get('traceparent')),
        tenant: tokenTenant,
        topicFor,
        topicProblem: tenantTopicProblem,
        topicInvalid,
        maxBatchLines: ingestDeps.maxBatchLines,
        maxJsonDepth: ingestDeps.maxJsonDepth,
        maxLineBytes: ingestDeps.maxLineBytes,
      });
      tenant = singleTenant(envelopes);
      // Bun 1.4.5 answers some framings (a chunked trailer, bytes after the body, pipelined requests)
      // with its own bare 400, or nothing, and closes the connection while this handler runs; it
      // signals that one event-loop turn after the body was read. Such a request must not be
      // written: its client was told it failed (README, "Bun's HTTP framing").
      await afterThisTurn();
      if (req.signal.aborted) throw new SluiceError('request_incomplete', 'the connection was closed before the write');
      const results = await ingestDeps.write(envelopes, hold);
      countEvents(results, countTenantEvents);
      // A plain Response with the headers c.header + c.json would give, in their order: Hono's
      // context building them cost ~2% of a single-event ingest.
      if (format === 'json') {
        const [r] = results;
        response = jsonResponse(r, r?.duplicate === true ? 200 : 202, requestId);
      } else {
        const duplicates = results.filter((r) => r.duplicate).length;
        response = jsonResponse({ accepted: results.length - duplicates, duplicates, results }, 202, requestId);
      }
    } catch (err) {
      response = plainErrorResponse(err, log, INGEST_PATH, requestId);
      const code = err instanceof SluiceError ? err.code : 'internal';
      // A write refused while draining is the shutdown working as meant (it logs its own lines).
      if (statusOf(err) >= 500 && code !== 'shutting_down') failures.warn(code, 'ingest failed', { request_id: requestId, code });
    }
    hold?.release();
    const status = String(response.status);
    metrics.ingestTally.request(status, tenant === UNKNOWN_TENANT || tenant === MIXED_TENANTS ? tenant : deps.tenants.metricLabel(tenant));
    metrics.ingestLatency.observeOne(status, (performance.now() - started) / 1000);
    return response;
  };
  if (ingest !== undefined) {
    // Hono still routes what the direct path below leaves to it (a percent-encoded path, say).
    app.post(INGEST_PATH, (c) => ingest(c.req.raw));
    // POST /v1/events goes straight to its handler: Hono's routing, context and promise chain per
    // request cost more than the route's own work outside the body. Everything else, Hono as before.
    const routed = app.fetch;
    app.fetch = (req, env, executionCtx) => (req.method === 'POST' && isIngestUrl(req.url) ? ingest(req) : routed(req, env, executionCtx));
  }

  if (deps.admin !== undefined) app.route('/admin', createAdminApp(deps.admin, { log, metrics, tenants: deps.tenants }));

  addOpsRoutes(app, deps);

  return app;
}

const INGEST_PATH = '/v1/events';

/** The URL's path is exactly /v1/events (a query string allowed), found where Hono's getPath finds it. */
function isIngestUrl(url: string): boolean {
  const start = url.indexOf('/', url.indexOf(':') + 4);
  if (start < 0 || !url.startsWith(INGEST_PATH, start)) return false;
  const end = start + INGEST_PATH.length;
  return end === url.length || url.charCodeAt(end) === 0x3f;
}

function jsonResponse(body: unknown, status: number, requestId: string): Response {
  const response = new Response(JSON.stringify(body), { status });
  // Set on the response's own headers rather than given as an init object, which Bun converts at
  // ~0.15 µs more a request (CPU time). The same headers on the wire, in the same order.
  const { headers } = response;
  headers.set('X-Request-ID', requestId);
  headers.set('Content-Type', 'application/json');
  return response;
}

/**
 * Results counted by tenant and result, one update per run of a tenant's results rather than one
 * per event: a batch of 1,000 lines cost 1,000 label hashes. (Tenant label activity is so counted
 * per update, as before, and so per batch rather than per line.)
 */
function countEvents(results: WriteResult[], add: (tenant: string, result: 'accepted' | 'duplicate', n: number) => void): void {
  let run = 0;
  while (run < results.length) {
    const tenant = results[run]?.tenant_id ?? UNKNOWN_TENANT;
    let accepted = 0;
    let duplicates = 0;
    for (; run < results.length && results[run]?.tenant_id === tenant; run++) {
      if (results[run]?.duplicate === true) duplicates++;
      else accepted++;
    }
    if (accepted > 0) add(tenant, 'accepted', accepted);
    if (duplicates > 0) add(tenant, 'duplicate', duplicates);
  }
}

function singleTenant(envelopes: Envelope[]): string {
  const first = envelopes[0]?.tenant_id ?? UNKNOWN_TENANT;
  return envelopes.every((e) => e.tenant_id === first) ? first : MIXED_TENANTS;
}
