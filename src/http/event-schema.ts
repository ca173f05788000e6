import { z } from 'zod';

/** Header names sluice sets on every Kafka record; an event may not supply its own. */
export const RESERVED_HEADERS = new Set([
  'tenant_id',
  'dedupe_key',
  'outbox_id',
  'request_id',
  'ingested_at',
  'traceparent',
  'replay',
]);

export const LIMITS = {
  tenantId: 128,
  dedupeKey: 256,
  requestId: 256,
  headerCount: 32,
  headerName: 128,
  headerValue: 4096,
} as const;

export const tenantIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]+$/, { error: 'must use only A-Z a-z 0-9 . _ -' })
  .max(LIMITS.tenantId, { error: `must be at most ${LIMITS.tenantId} characters` });

export const dedupeKeySchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(LIMITS.dedupeKey, { error: `must be at most ${LIMITS.dedupeKey} characters` })
  .refine(storable, { error: 'must be valid Unicode without NUL characters' });

const topicSchema = z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, { error: 'is not a valid Kafka topic name' });

const headersSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(LIMITS.headerName, { error: `header names must be at most ${LIMITS.headerName} characters` })
      .refine((name) => !RESERVED_HEADERS.has(name.toLowerCase()), { error: 'is a header name sluice sets itself' })
      .refine(storable, { error: 'must be valid Unicode without NUL characters' }),
    z
      .string({ error: 'header values must be strings' })
      .max(LIMITS.headerValue, { error: `header values must be at most ${LIMITS.headerValue} characters` })
      .refine(storable, { error: 'must be valid Unicode without NUL characters' }),
  )
  .refine((h) => Object.keys(h).length <= LIMITS.headerCount, {
    error: `at most ${LIMITS.headerCount} headers`,
  });

/** An event's shape, without the walk of its payload for unstorable strings (see `mayHoldUnstorable`). */
export const eventShapeSchema = z.strictObject({
  dedupe_key: dedupeKeySchema.optional(),
  payload: z.record(z.string(), z.unknown(), { error: 'must be a JSON object' }),
  topic: topicSchema.optional(),
  headers: headersSchema.optional(),
  tenant_id: tenantIdSchema.optional(),
  namespace: z
    .string()
    .regex(/^[A-Za-z0-9._-]+:.+$/, { error: 'must have the form tenant:namespace' })
    .max(512)
    .optional(),
});

export const eventSchema = eventShapeSchema.superRefine((event, ctx) => {
  // Postgres jsonb cannot hold NUL characters or lone surrogates: reject them here, with their path.
  const bad = findUnstorable(event.payload, ['payload']);
  if (bad !== undefined) {
    ctx.addIssue({ code: 'custom', path: bad, message: 'must be valid Unicode without NUL characters' });
  }
});

export type EventBody = z.infer<typeof eventSchema>;

/**
 * Whether JSON text decoded from valid UTF-8 can yield a string Postgres cannot store. JSON.parse
 * rejects raw control characters in strings and valid UTF-8 holds no lone surrogates, so only the
 * escapes \u0000 and \uD800-\uDFFF can; text without them needs no walk of every parsed value (that
 * walk was ~10% of the CPU of an NDJSON ingest). A false alarm (an escaped backslash before "u")
 * only costs the walk.
 */
export function mayHoldUnstorable(json: string): boolean {
  return /\\u(?:0000|[dD][89a-fA-F])/.test(json);
}

function storable(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

function findUnstorable(value: unknown, path: (string | number)[]): (string | number)[] | undefined {
  if (typeof value === 'string') return storable(value) ? undefined : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = findUnstorable(value[i], [...path, i]);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (!storable(k)) return [...path, k];
      const bad = findUnstorable(v, [...path, k]);
      if (bad !== undefined) return bad;
    }
  }
  return undefined;
}
