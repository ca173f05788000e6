import { z } from 'zod';
import { SluiceError } from '../errors.ts';
import { tenantIdSchema } from '../core/identifiers.ts';
import { OUTBOX_STATUSES } from '../core/modes.ts';
import { mediaType } from './parse-events.ts';
import { readBody } from './read-body.ts';
import { issueDetails } from '../core/zod-issues.ts';

export const ADMIN_LIMITS = {
  /** Ids in one replay-by-ids call (one UPDATE). */
  ids: 10_000,
  /** Rows one tenant replay may re-queue. */
  tenantRows: 100_000,
  tenantRowsDefault: 10_000,
  /** Enough for `ids` ids of 19 digits, quoted, with room to spare. */
  bodyBytes: 512 * 1024,
} as const;

const PG_BIGINT_MAX = 9_223_372_036_854_775_807n;
const ID_MESSAGE = 'must be a positive whole number (an outbox id), as a number or a string';

const outboxId = z.union([z.string(), z.number()], { error: ID_MESSAGE }).transform((value, ctx) => {
  // JSON.parse has already rounded a number past 2^53 to another id: it must come as a string.
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    ctx.addIssue({ code: 'custom', message: `${ID_MESSAGE}; above 9007199254740991 only as a string (a JSON number that large loses digits)` });
    return z.NEVER;
  }
  const id = String(value);
  if (!/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > PG_BIGINT_MAX) {
    ctx.addIssue({ code: 'custom', message: ID_MESSAGE });
    return z.NEVER;
  }
  return id;
});

export const replayIdsSchema = z.strictObject({
  ids: z
    .array(outboxId, { error: 'must be a list of outbox ids' })
    .min(1, { error: 'must name at least one id' })
    .max(ADMIN_LIMITS.ids, { error: `at most ${ADMIN_LIMITS.ids} ids per call` }),
});

const instant = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone' });

export const replayTenantSchema = z
  .strictObject({
    tenant_id: tenantIdSchema.min(1, { error: 'must not be empty' }),
    since: instant.optional(),
    until: instant.optional(),
    status: z
      .array(z.enum(OUTBOX_STATUSES, { error: 'must be pending, sent or dead' }))
      .min(1, { error: 'must name at least one status' })
      .max(OUTBOX_STATUSES.length)
      .default(['sent', 'dead']),
    limit: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: 'must be at least 1' })
      .max(ADMIN_LIMITS.tenantRows, { error: `must be at most ${ADMIN_LIMITS.tenantRows}` })
      .default(ADMIN_LIMITS.tenantRowsDefault),
    dry_run: z.boolean({ error: 'must be true or false' }).default(false),
  })
  .refine((b) => b.since === undefined || b.until === undefined || Date.parse(b.since) < Date.parse(b.until), {
    path: ['until'],
    error: 'must be later than since',
  });

/** Reads an admin request's JSON body and validates it: 415, 413, 400 as for ingest. */
export async function readAdminBody<T>(req: Request, schema: z.ZodType<T>): Promise<T> {
  if (mediaType(req.headers.get('Content-Type')) !== 'json') {
    throw new SluiceError('unsupported_media_type', 'Content-Type must be application/json');
  }
  const { body } = await readBody(req, ADMIN_LIMITS.bodyBytes, `${ADMIN_LIMITS.bodyBytes} bytes for admin calls`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(body));
  } catch (err) {
    throw new SluiceError('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new SluiceError('validation_failed', 'request body is invalid', {
      details: issueDetails(parsed.error),
    });
  }
  return parsed.data;
}
