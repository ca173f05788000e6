import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type ErrorCode, type ErrorDetail, SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';

/** The one place where error codes become HTTP statuses. */
const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  invalid_json: 400,
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  request_incomplete: 400,
  header_too_large: 431,
  unsupported_media_type: 415,
  backlog_full: 429,
  overloaded: 503,
  not_ready: 503,
  shutting_down: 503,
  journal_unavailable: 503,
  outbox_unavailable: 503,
  kafka_unavailable: 503,
  config_invalid: 500,
  file_unavailable: 500,
  address_unavailable: 500,
  journal_corrupt: 500,
  kafka_rejected: 500,
  kafka_fenced: 503,
  kafka_topic_refused: 500,
  kafka_topic_unavailable: 503,
  partition_lost: 503,
  progress_corrupt: 500,
  internal: 500,
};

/**
 * Error bodies are bounded whatever the request held: the first details (with `details_total` when
 * there were more), and messages and paths clipped, since both can quote the client's input.
 */
const MAX_DETAILS = 20;
const MAX_MESSAGE_CHARS = 512;
const MAX_DETAIL_CHARS = 256;

/** At most `max` characters, the ellipsis included; never half a surrogate pair. */
function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  const cut = /[\ud800-\udbff]$/.test(s.slice(0, max - 1)) ? max - 2 : max - 1;
  return `${s.slice(0, cut)}…`;
}

function boundedDetail(d: ErrorDetail): ErrorDetail {
  const bounded: ErrorDetail = { ...d, message: clip(d.message, MAX_DETAIL_CHARS) };
  if (d.path !== undefined) bounded.path = clip(d.path, MAX_DETAIL_CHARS);
  return bounded;
}

export function statusOf(err: unknown): ContentfulStatusCode {
  return err instanceof SluiceError ? STATUS[err.code] : 500;
}

/** An error's status, body and extra headers, logged when it is no SluiceError: what both answers below send. */
function errorParts(err: unknown, log: Logger, path: string): { status: ContentfulStatusCode; body: unknown; headers: [string, string][] } {
  if (!(err instanceof SluiceError)) {
    log.error('unhandled error', { error: err instanceof Error ? err.stack ?? err.message : String(err), path });
    return { status: 500, body: { error: { code: 'internal', message: 'internal error' } }, headers: [] };
  }
  const body: { code: ErrorCode; message: string; details?: ErrorDetail[]; details_total?: number } = {
    code: err.code,
    message: clip(err.message, MAX_MESSAGE_CHARS),
  };
  if (err.details !== undefined) {
    body.details = err.details.slice(0, MAX_DETAILS).map(boundedDetail);
    if (err.details.length > MAX_DETAILS) body.details_total = err.details.length;
  }
  const headers: [string, string][] = [];
  if (err.retryAfter !== undefined) headers.push(['Retry-After', String(Math.max(1, Math.ceil(err.retryAfter)))]);
  if (err.code === 'unauthorized') headers.push(['WWW-Authenticate', 'Bearer']);
  return { status: STATUS[err.code], body: { error: body }, headers };
}

export function errorResponse(c: Context, err: unknown, log: Logger): Response {
  const { status, body, headers } = errorParts(err, log, c.req.path);
  for (const [name, value] of headers) c.header(name, value);
  return c.json(body, status);
}

/**
 * The same answer without a Hono context (the ingest route's direct path), with its X-Request-ID:
 * the headers c.header + c.json would give, in their order.
 */
export function plainErrorResponse(err: unknown, log: Logger, path: string, requestId: string): Response {
  const { status, body, headers } = errorParts(err, log, path);
  const all = new Headers({ 'X-Request-ID': requestId });
  for (const [name, value] of headers) all.set(name, value);
  all.set('Content-Type', 'application/json');
  return new Response(JSON.stringify(body), { status, headers: all });
}
