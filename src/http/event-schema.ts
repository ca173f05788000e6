import { z } from 'zod';
import { CONTROL, dedupeKeySchema, isDedupeKey, isTenantId, LIMITS, NAMESPACE_SYNTAX, storable, tenantIdSchema } from '../core/identifiers.ts';
import { RESERVED_HEADERS } from '../core/record.ts';
import { KAFKA_TOPIC_SYNTAX } from '../core/topic-rule.ts';

/**
 * A header name compared as a reader of Kafka headers might: case, whitespace (any Unicode space)
 * and `-`/`_` ignored, so neither `Tenant-ID ` nor `TenantId` can pass for sluice's own `tenant_id`.
 */
function lookAlike(name: string): string {
  return name.toLowerCase().replace(/[\s_-]/g, '');
}

/** Sluice's own header names by their look-alike form. */
const RESERVED_LOOK_ALIKES = new Map([...RESERVED_HEADERS].map((h) => [lookAlike(h), h]));

function headerNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'header names must not be empty';
  if (name.length > LIMITS.headerName) return `header names must be at most ${LIMITS.headerName} characters`;
  if (CONTROL.test(name)) return 'header names must not hold control characters';
  if (!storable(name)) return 'header names must be valid Unicode';
  // Zod and plain objects treat this name as the prototype, not as a key.
  if (name === '__proto__') return 'is not allowed as a header name';
  const reserved = RESERVED_LOOK_ALIKES.get(lookAlike(name));
  if (reserved !== undefined) return `is (or looks like) the header ${reserved} that sluice sets itself`;
  return undefined;
}

function headerValueProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'header values must be strings';
  if (value.length > LIMITS.headerValue) return `header values must be at most ${LIMITS.headerValue} characters`;
  if (!storable(value)) return 'must be valid Unicode without NUL characters';
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checked by hand rather than with z.record, which skips a `__proto__` key without a word. */
const headersSchema = z
  .custom<Record<string, string>>(isPlainObject, { error: 'must be a JSON object of string values' })
  .superRefine((headers, ctx) => {
    const names = Object.keys(headers);
    if (names.length > LIMITS.headerCount) {
      ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.headerCount} headers` });
      return;
    }
    for (const name of names) {
      const problem = headerNameProblem(name) ?? headerValueProblem(headers[name]);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: problem });
    }
  });

/**
 * An event as parsed from JSON. The payload is only checked to be an object here: what travels on
 * is its exact text (see src/json-text.ts), so nothing in it is rewritten.
 */
export const eventSchema = z.strictObject({
  dedupe_key: dedupeKeySchema.optional(),
  payload: z.custom<Record<string, unknown>>(isPlainObject, { error: 'must be a JSON object' }),
  // Kafka's syntax here, with the other fields; the rest of the topic rule (src/core/topic-rule.ts)
  // runs once the tenant is known.
  topic: z.string().regex(KAFKA_TOPIC_SYNTAX, { error: 'is not a valid Kafka topic name' }).optional(),
  headers: headersSchema.optional(),
  tenant_id: tenantIdSchema.optional(),
  namespace: z
    .string()
    .regex(NAMESPACE_SYNTAX, { error: 'must have the form tenant:namespace, without control characters' })
    .max(LIMITS.namespace)
    .optional(),
});

export type EventBody = z.infer<typeof eventSchema>;

/** The members an event may have (eventSchema is strict), the payload first (see ordinaryEvent). */
export const EVENT_MEMBERS: readonly string[] = ['payload', ...Object.keys(eventSchema.shape).filter((k) => k !== 'payload')];

const EVENT_KEYS = new Set(EVENT_MEMBERS);

function validHeaders(v: unknown): boolean {
  if (!isPlainObject(v)) return false;
  const names = Object.keys(v);
  if (names.length > LIMITS.headerCount) return false;
  for (const name of names) if (headerNameProblem(name) !== undefined || headerValueProblem(v[name]) !== undefined) return false;
  return true;
}

/**
 * Whether eventSchema accepts `value`, checked by hand: the schema's zod pass cost more than the
 * JSON.parse before it. It accepts exactly what the schema accepts (test/http/event-schema.test.ts
 * holds them side by side); a value it refuses goes through the schema, whose issues are the answer.
 */
export function isValidEvent(value: unknown): value is EventBody {
  if (!isPlainObject(value)) return false;
  for (const key in value) if (!EVENT_KEYS.has(key)) return false;
  if (!isPlainObject(value.payload)) return false;
  const { dedupe_key, topic, headers, tenant_id, namespace } = value;
  if (dedupe_key !== undefined && !isDedupeKey(dedupe_key)) return false;
  if (topic !== undefined && !(typeof topic === 'string' && KAFKA_TOPIC_SYNTAX.test(topic))) return false;
  if (headers !== undefined && !validHeaders(headers)) return false;
  if (tenant_id !== undefined && !isTenantId(tenant_id)) return false;
  return namespace === undefined || (typeof namespace === 'string' && namespace.length <= LIMITS.namespace && NAMESPACE_SYNTAX.test(namespace));
}
