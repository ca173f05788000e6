import type { z } from 'zod';

/** Where a zod issue points, as a caller reads it: `a.b.0`, or `(root)` for the value itself. */
export function issuePath(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.');
  return path.length > 0 ? path : '(root)';
}

/** A failed parse as error details, one per issue. */
export function issueDetails(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({ path: issuePath(issue), message: issue.message }));
}
