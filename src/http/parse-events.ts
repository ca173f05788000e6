import type { Envelope } from '../core/record.ts';
import { type ErrorDetail, SluiceError } from '../errors.ts';
import { memberSpans, scanEvent, topMembers } from '../json-text.ts';
import { dedupeKeySchema, isDedupeKey } from '../core/identifiers.ts';
import { EVENT_MEMBERS, eventSchema, isValidEvent, type EventBody } from './event-schema.ts';
import { bodyClaims, claimMismatch, headerClaims, resolveOpenTenant, type TenantClaim } from './tenant.ts';
import { issueDetails } from '../core/zod-issues.ts';
import { validated } from './validated.ts';

export type BodyFormat = 'json' | 'ndjson';

export interface RequestContext {
  headers: Headers;
  requestId: string;
  /** Whether the client sent X-Request-ID itself (only then may it serve as a dedupe key). */
  clientRequestId: boolean;
  traceparent: string | undefined;
  /** The token's tenant in authenticated mode; undefined in open mode, where claims decide. */
  tenant: string | undefined;
  /** Topic for a tenant's events that name none. */
  topicFor(tenant: string): string;
  /** Why a tenant may not publish to a topic its event names (403), or undefined. */
  topicProblem(tenant: string, topic: string): string | undefined;
  /** Why no event may name this topic (the topic rule: 400), or undefined. */
  topicInvalid(topic: string): string | undefined;
  maxBatchLines: number;
  /** SLUICE_MAX_JSON_DEPTH: checked on the text before it is parsed. */
  maxJsonDepth: number;
  /** SLUICE_MAX_LINE_BYTES: one event's bytes (a JSON body, or an NDJSON line). */
  maxLineBytes: number;
}

/** Bad lines, and lines claiming a tenant other than the token's: the batch fails with 400 or 403. */
interface Problems {
  invalid: ErrorDetail[];
  forbidden: ErrorDetail[];
  /** Some line is not JSON at all (invalid_json rather than validation_failed). */
  badJson: boolean;
}

/**
 * W3C Trace Context's `traceparent`: version 00 is exactly `version-trace_id-parent_id-flags`; a later
 * version (any but ff, which is invalid) may carry more after a `-`, which a receiver parses past. An
 * all-zero trace id or parent id is invalid.
 */
const TRACEPARENT = /^([0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[\x21-\x7e]*)?$/;

/**
 * W3C says an invalid traceparent is ignored, not an error: the record simply carries none. A valid
 * one travels as the client sent it (a later version's extra fields too).
 */
export function validTraceparent(value: string | null): string | undefined {
  if (value === null) return undefined;
  const m = TRACEPARENT.exec(value);
  if (m === null) return undefined;
  const [, version, rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  return value;
}

/** Stateless between whole-buffer decodes, so one serves every request. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** One event that passed JSON.parse: its value, and its payload's exact text. */
interface ParsedEvent {
  value: unknown;
  payload: string | undefined;
}

/**
 * The headers of an event that names none, shared: an envelope lives until the forwarder inserts it
 * (in the hand-off queue), and a fresh empty object per event was one object in every ~9 still
 * held there. Nothing writes to an envelope's headers (frozen, so nothing can).
 */
const NO_HEADERS: Record<string, string> = Object.freeze({});

/** Stands for the payload in an event checked on its text: only its being an object is checked, and its text travels. */
const PAYLOAD_OBJECT = Object.freeze({});

/** Where topMembers puts each member of the line being read: one for every line, as reading is synchronous. */
const SPANS = memberSpans(EVENT_MEMBERS);

/**
 * An ordinary valid event, read in one pass over its text (topMembers) without building its payload:
 * JSON.parse of every event, and the garbage of its payload's objects, were the largest cost of an
 * NDJSON batch. Anything else (not JSON, too deep, an unknown or invalid member) is undefined and
 * goes the way it always went, JSON.parse and the schema, whose errors are the answer.
 */
function ordinaryEvent(text: string, maxDepth: number): { event: EventBody; payload: string } | undefined {
  if (!topMembers(text, maxDepth, EVENT_MEMBERS, SPANS)) return undefined;
  // EVENT_MEMBERS[0] is the payload.
  const payloadStart = SPANS[0] as number;
  if (payloadStart < 0 || text.charCodeAt(payloadStart) !== 0x7b) return undefined;
  const value: Record<string, unknown> = { payload: PAYLOAD_OBJECT };
  for (let k = 1; k < EVENT_MEMBERS.length; k++) {
    const start = SPANS[2 * k] as number;
    if (start >= 0) value[EVENT_MEMBERS[k] as string] = memberValue(text, start, SPANS[2 * k + 1] as number);
  }
  return isValidEvent(value) ? { event: value, payload: text.slice(payloadStart, SPANS[1]) } : undefined;
}

/** The value of the JSON text[start, end): a string without escapes is sliced out, anything else parsed. */
function memberValue(text: string, start: number, end: number): unknown {
  if (text.charCodeAt(start) !== 0x22) return JSON.parse(text.slice(start, end));
  for (let i = start + 1; i < end - 1; i++) if (text.charCodeAt(i) === 0x5c) return JSON.parse(text.slice(start, end));
  return text.slice(start + 1, end - 1);
}

export function mediaType(contentType: string | null): BodyFormat | undefined {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/x-ndjson' || type === 'application/ndjson') return 'ndjson';
  return undefined;
}

/**
 * Turns a request body into envelopes. A batch is all-or-nothing: every bad line is reported (with its
 * line number) and nothing is returned unless all are good.
 */
export function parseEvents(body: Uint8Array, format: BodyFormat, ctx: RequestContext): Envelope[] {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new SluiceError('invalid_json', 'request body is not valid UTF-8');
  }
  const headerTenants = headerClaims(ctx.headers);
  const headerMismatch = ctx.tenant === undefined ? undefined : claimMismatch(ctx.tenant, headerTenants);
  if (headerMismatch !== undefined) throw new SluiceError('forbidden', headerMismatch);
  const headerKey = idempotencyHeader(ctx);
  const problems: Problems = { invalid: [], forbidden: [], badJson: false };
  if (format === 'json') {
    const ordinary = body.byteLength > ctx.maxLineBytes ? undefined : ordinaryEvent(text, ctx.maxJsonDepth);
    const parsed = ordinary ?? parseEvent(text, body.byteLength, undefined, ctx, problems);
    const envelope = parsed === undefined ? undefined : toEnvelope(parsed, undefined, headerKey, headerTenants, ctx, problems);
    if (envelope !== undefined) return [envelope];
    // A problem of the whole body (not JSON, too deep, too large) is the message; field problems are details.
    const [first] = problems.invalid;
    throw rejection(first !== undefined && first.path === undefined ? `request body: ${first.message}` : 'event is invalid', problems);
  }
  const envelopes: Envelope[] = [];
  let count = 0;
  // Line by line with indexOf rather than split: no array of every line held at once.
  for (let i = 0, start = 0; start <= text.length; i++) {
    const newline = text.indexOf('\n', start);
    const end = newline < 0 ? text.length : newline;
    const line = trimJsonSpace(text.slice(start, end));
    start = end + 1;
    if (line.length === 0) continue;
    if (++count > ctx.maxBatchLines) {
      throw new SluiceError('payload_too_large', `batch has more than ${ctx.maxBatchLines} events`, {
        details: [{ line: i + 1, message: `limit is SLUICE_MAX_BATCH_LINES=${ctx.maxBatchLines}` }],
      });
    }
    // A line's UTF-8 length is at most 3 bytes a character; counted only when that could pass the limit.
    const bytes = line.length * 3 > ctx.maxLineBytes ? Buffer.byteLength(line) : line.length;
    const ordinary = bytes > ctx.maxLineBytes ? undefined : ordinaryEvent(line, ctx.maxJsonDepth);
    const parsed = ordinary ?? parseEvent(line, bytes, i + 1, ctx, problems);
    if (parsed === undefined) continue;
    const lineKey = headerKey === undefined ? undefined : `${headerKey}:${i + 1}`;
    const envelope = toEnvelope(parsed, i + 1, lineKey, headerTenants, ctx, problems);
    if (envelope !== undefined) envelopes.push(envelope);
  }
  const bad = new Set([...problems.invalid, ...problems.forbidden].map((p) => p.line)).size;
  if (bad > 0) throw rejection(`${bad} invalid line(s) in batch; nothing was written`, problems);
  if (envelopes.length === 0) throw new SluiceError('validation_failed', 'batch holds no events');
  return envelopes;
}

/**
 * JSON.parse of one event, after the limits that keep it linear and shallow: its size and its
 * nesting depth, both checked on the text (by the scan that also finds the payload's text). Problems
 * are recorded; undefined means the event is bad.
 */
function parseEvent(text: string, bytes: number, line: number | undefined, ctx: RequestContext, problems: Problems): ParsedEvent | undefined {
  if (bytes > ctx.maxLineBytes) {
    problems.invalid.push(withLine({ message: `event is ${bytes} bytes; limit is SLUICE_MAX_LINE_BYTES=${ctx.maxLineBytes}` }, line));
    return undefined;
  }
  const scan = scanEvent(text, ctx.maxJsonDepth);
  if (scan.tooDeep) {
    problems.invalid.push(withLine({ message: `JSON nests deeper than SLUICE_MAX_JSON_DEPTH=${ctx.maxJsonDepth} levels` }, line));
    return undefined;
  }
  try {
    return { value: JSON.parse(text) as unknown, payload: scan.payload };
  } catch (err) {
    problems.invalid.push(withLine({ message: `not valid JSON: ${(err as Error).message}` }, line));
    problems.badJson = true;
    return undefined;
  }
}

function toEnvelope(
  parsed: ParsedEvent | { event: EventBody; payload: string },
  line: number | undefined,
  fallbackKey: string | undefined,
  headerTenants: TenantClaim[],
  ctx: RequestContext,
  problems: Problems,
): Envelope | undefined {
  const event = 'event' in parsed ? parsed.event : validEvent(parsed.value);
  if ('issues' in event) {
    for (const detail of event.issues) problems.invalid.push(withLine(detail, line));
    return undefined;
  }
  const tenant = eventTenant(ctx.tenant, headerTenants, event);
  if ('forbidden' in tenant) {
    problems.forbidden.push(withLine({ path: 'tenant_id', message: tenant.forbidden }, line));
    return undefined;
  }
  if ('error' in tenant) {
    problems.invalid.push(withLine({ path: 'tenant_id', message: tenant.error }, line));
    return undefined;
  }
  const invalidTopic = event.topic === undefined ? undefined : ctx.topicInvalid(event.topic);
  if (invalidTopic !== undefined) {
    problems.invalid.push(withLine({ path: 'topic', message: `${event.topic} ${invalidTopic}` }, line));
    return undefined;
  }
  const topicProblem = event.topic === undefined ? undefined : ctx.topicProblem(tenant.tenant, event.topic);
  if (topicProblem !== undefined) {
    problems.forbidden.push(withLine({ path: 'topic', message: topicProblem }, line));
    return undefined;
  }
  const envelope: Envelope = {
    tenant_id: tenant.tenant,
    dedupe_key: event.dedupe_key ?? fallbackKey ?? Bun.randomUUIDv7(),
    topic: event.topic ?? ctx.topicFor(tenant.tenant),
    request_id: ctx.requestId,
    headers: event.headers ?? NO_HEADERS,
    payload: payloadText(parsed.payload),
  };
  if (ctx.traceparent !== undefined) envelope.traceparent = ctx.traceparent;
  return envelope;
}

/** The event as the schema has it, or the schema's issues. */
function validEvent(value: unknown): EventBody | { issues: ErrorDetail[] } {
  // The schema runs only for an event the hand-written check refuses: its issues are the answer.
  if (isValidEvent(value)) return value;
  const parsed = eventSchema.safeParse(value);
  return parsed.success ? parsed.data : { issues: issueDetails(parsed.error) };
}

/** The payload's exact text. The event passed JSON.parse with an object payload, so the scan found it. */
function payloadText(raw: string | undefined): string {
  if (raw === undefined) throw new SluiceError('internal', 'the payload of a parsed event was not found in its text');
  return raw;
}

/**
 * A line without the whitespace JSON allows around a value (space, tab, CR). Not String#trim, which
 * also strips U+FEFF, NBSP and other Unicode spaces JSON.parse refuses: a line starting with one must
 * be refused as JSON.parse refuses it, not accepted (or skipped as blank).
 */
function trimJsonSpace(line: string): string {
  let from = 0;
  let to = line.length;
  while (from < to && isJsonSpace(line.charCodeAt(from))) from++;
  while (to > from && isJsonSpace(line.charCodeAt(to - 1))) to--;
  return from === 0 && to === line.length ? line : line.slice(from, to);
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/** X-Idempotency-Key, else a client-sent X-Request-ID: the first one present must be a valid dedupe key. */
function idempotencyHeader(ctx: RequestContext): string | undefined {
  const key = ctx.headers.get('X-Idempotency-Key');
  if (key !== null) return dedupeKeyHeader('X-Idempotency-Key', key);
  return ctx.clientRequestId ? dedupeKeyHeader('X-Request-ID', ctx.requestId) : undefined;
}

function dedupeKeyHeader(name: string, value: string): string {
  return isDedupeKey(value) ? value : validated(dedupeKeySchema, value, name, `header ${name} is not a valid dedupe key`);
}

function withLine(detail: ErrorDetail, line: number | undefined): ErrorDetail {
  return line === undefined ? detail : { line, ...detail };
}

function eventTenant(
  tokenTenant: string | undefined,
  headerTenants: TenantClaim[],
  event: EventBody,
): { tenant: string } | { error: string } | { forbidden: string } {
  if (tokenTenant === undefined) return resolveOpenTenant([...headerTenants, ...bodyClaims(event)]);
  // Header claims were checked against the token before any line: only the body's can differ.
  if (event.tenant_id === undefined && event.namespace === undefined) return { tenant: tokenTenant };
  const mismatch = claimMismatch(tokenTenant, bodyClaims(event));
  return mismatch === undefined ? { tenant: tokenTenant } : { forbidden: mismatch };
}

/** A claim of someone else's tenant outranks a malformed line: the client must learn it is refused. */
function rejection(message: string, problems: Problems): SluiceError {
  if (problems.forbidden.length > 0) {
    return new SluiceError('forbidden', 'the request claims a tenant other than the token\'s; nothing was written', {
      details: problems.forbidden,
    });
  }
  return new SluiceError(problems.badJson ? 'invalid_json' : 'validation_failed', message, { details: problems.invalid });
}
