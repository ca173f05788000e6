import { z } from 'zod';

export const LIMITS = {
  tenantId: 128,
  dedupeKey: 256,
  requestId: 256,
  headerCount: 32,
  headerName: 128,
  headerValue: 4096,
} as const;

/** C0 and C1 control characters and DEL: they would reach logs and Kafka headers raw (CR/LF, ESC). */
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Text Postgres can store and Kafka headers carry: well-formed Unicode without NUL. */
export function storable(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

export const tenantIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]+$/, { error: 'must use only A-Z a-z 0-9 . _ -' })
  .max(LIMITS.tenantId, { error: `must be at most ${LIMITS.tenantId} characters` });

export const dedupeKeySchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(LIMITS.dedupeKey, { error: `must be at most ${LIMITS.dedupeKey} characters` })
  .refine((s) => !CONTROL.test(s), { error: 'must not hold control characters' })
  .refine(storable, { error: 'must be valid Unicode' });
