import type { z } from 'zod';
import { SluiceError } from '../errors.ts';

/** One value a client sent (a header, a path parameter), checked; a 400 names it and says what is wrong. */
export function validated<T>(schema: z.ZodType<T>, value: unknown, path: string, message: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new SluiceError('validation_failed', message, {
    details: [{ path, message: parsed.error.issues[0]?.message ?? 'invalid' }],
  });
}
