import { SluiceError, type ErrorDetail } from '../errors.ts';
import { LIMITS } from '../core/identifiers.ts';

/**
 * Longest accepted value of each header sluice reads. Bun.serve caps the whole header block; these
 * caps come first and answer in sluice's error shape, naming the header.
 */
const HEADER_LIMITS: readonly (readonly [string, number])[] = [
  ['authorization', 2048],
  ['x-idempotency-key', LIMITS.dedupeKey],
  ['x-request-id', LIMITS.requestId],
  ['x-tenant-id', LIMITS.tenantId],
  ['x-soma-tenant', LIMITS.tenantId],
];

/** Throws 431 header_too_large naming every header over its limit. */
export function checkHeaderLimits(headers: Headers): void {
  let problems: ErrorDetail[] | undefined;
  for (const [name, max] of HEADER_LIMITS) {
    const length = headers.get(name)?.length ?? 0;
    if (length > max) (problems ??= []).push({ path: name, message: `must be at most ${max} characters, got ${length}` });
  }
  if (problems !== undefined) {
    throw new SluiceError('header_too_large', `${problems.map((p) => p.path).join(', ')} too long`, { details: problems });
  }
}
