import type { z } from 'zod';
import { issueDetails } from '../core/zod-issues.ts';
import { SluiceError } from '../errors.ts';

/** One value a client sent (a header, a path parameter), checked; a 400 names it and says what is wrong. */
export function validated<T>(schema: z.ZodType<T>, value: unknown, path: string, message: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new SluiceError('validation_failed', message, {
    // The caller names the value; of what is wrong with it, the first issue is enough to fix it.
    details: [{ path, message: issueDetails(parsed.error)[0]?.message ?? 'invalid' }],
  });
}
