import { z } from 'zod';

export const LIMITS = {
  tenantId: 128,
  dedupeKey: 256,
  requestId: 256,
  headerCount: 32,
  headerName: 128,
  headerValue: 4096,
  namespace: 512,
} as const;

/** C0 and C1 control characters and DEL: they would reach logs and Kafka headers raw (CR/LF, ESC). */
const CONTROL_CHARS = '\\u0000-\\u001f\\u007f-\\u009f';

export const CONTROL = new RegExp(`[${CONTROL_CHARS}]`);

/** Text Postgres can store and Kafka headers carry: well-formed Unicode without NUL. */
export function storable(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

/** The characters of every name sluice builds keys, ids and paths from (tenants, nodes, transactional ids). */
const ID_CHARS = 'A-Za-z0-9._-';

/** 1 to `max` characters of ID_CHARS, said the same way wherever such a name is set. */
export function idSchema(max: number) {
  return z.string().regex(new RegExp(`^[${ID_CHARS}]{1,${max}}$`), { error: `must be 1-${max} characters of A-Z a-z 0-9 . _ -` });
}

export const NODE_ID_MAX = 64;

/** A node's id: it names the node's journal directory and the ids of its records. */
export const nodeIdSchema = idSchema(NODE_ID_MAX);

/** A node id made from a host name: whatever it holds outside the id's characters becomes `-`. */
export function nodeIdFromHost(host: string): string {
  const cleaned = host.replace(new RegExp(`[^${ID_CHARS}]`, 'g'), '-').slice(0, NODE_ID_MAX);
  return cleaned.length > 0 ? cleaned : 'node';
}

/** `tenant:namespace`: the tenant part follows the tenant id rule, the rest is free text without control characters. */
export const NAMESPACE_SYNTAX = new RegExp(`^[${ID_CHARS}]{1,${LIMITS.tenantId}}:[^${CONTROL_CHARS}]+$`);

/*
 * Each rule below is said once and read two ways: the schema, whose messages name what is wrong, and
 * a predicate for the hot path, built from the same pieces (test/http/event-schema.test.ts holds them
 * side by side), because the schema's zod pass per event cost more than the check itself.
 */

const TENANT_ID_CHARS = new RegExp(`^[${ID_CHARS}]+$`);

export const tenantIdSchema = z
  .string()
  .regex(TENANT_ID_CHARS, { error: 'must use only A-Z a-z 0-9 . _ -' })
  .max(LIMITS.tenantId, { error: `must be at most ${LIMITS.tenantId} characters` });

/** Whether tenantIdSchema accepts `v`. */
export function isTenantId(v: unknown): v is string {
  return typeof v === 'string' && v.length <= LIMITS.tenantId && TENANT_ID_CHARS.test(v);
}

const noControl = (s: string): boolean => !CONTROL.test(s);

export const dedupeKeySchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(LIMITS.dedupeKey, { error: `must be at most ${LIMITS.dedupeKey} characters` })
  .refine(noControl, { error: 'must not hold control characters' })
  .refine(storable, { error: 'must be valid Unicode' });

/** Whether dedupeKeySchema accepts `v`. */
export function isDedupeKey(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= LIMITS.dedupeKey && noControl(v) && storable(v);
}
