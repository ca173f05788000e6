/**
 * The root cause of a connection failure in words an operator can act on. Client libraries wrap
 * it (Kafka: AggregateError → NetworkError → ECONNREFUSED); the innermost system error says most.
 */
const PHRASES: Record<string, string> = {
  ECONNREFUSED: 'connection refused (nothing listens there)',
  ECONNRESET: 'connection reset by the peer',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'host name lookup failed (DNS)',
  EACCES: 'permission denied',
};

interface Described {
  code: string | undefined;
  message: string;
}

/** The deepest error in the chain (causes and aggregated errors), with its code if it has one. */
function innermost(err: unknown, seen = new Set<unknown>()): Described | undefined {
  if (typeof err !== 'object' || err === null || seen.has(err)) return undefined;
  seen.add(err);
  const e = err as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  const inner = [...(Array.isArray(e.errors) ? e.errors : []), ...(e.cause === undefined ? [] : [e.cause])];
  for (const child of inner) {
    const found = innermost(child, seen);
    if (found !== undefined) return found;
  }
  return { code: typeof e.code === 'string' ? e.code : undefined, message: typeof e.message === 'string' ? e.message : String(err) };
}

/** One short phrase: `connection refused (nothing listens there)`, or the innermost message. */
export function networkCause(err: unknown): string {
  const found = innermost(err);
  if (found === undefined) return String(err);
  const phrase = found.code === undefined ? undefined : PHRASES[found.code];
  return phrase ?? found.message;
}

/** A URL for logs and messages: the password replaced, so it never reaches a log line. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
