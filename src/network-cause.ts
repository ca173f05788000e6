import { createConnection } from 'node:net';

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

/**
 * A URL for logs and messages: the password replaced, so it never reaches a log line. Done on the
 * text, not through `new URL`: a URL that does not parse (a port of 99999, an unencoded `?` or `/`
 * in the password) must be redacted too, and `new URL` may read an unencoded `/` in a password as
 * the start of the path and leave that password in view. Everything between the first `:` of the
 * user part and the last `@` is hidden: rather too much of an odd URL than any of its password.
 */
export function redactUrl(url: string): string {
  const start = url.indexOf('://');
  // No scheme: the value may be nothing but a secret.
  if (start === -1) return '(unparsable URL)';
  return redactQuery(redactUserinfo(url, start));
}

function redactUserinfo(url: string, start: number): string {
  const at = url.lastIndexOf('@');
  // No user part; but in `postgres://user:password/db` (the @host forgotten) the "port" is the password.
  if (at < start) return url.replace(/^([^:]*:\/\/[^:/?#]*:)([^/?#]*[^0-9/?#][^/?#]*)/, '$1***');
  const userinfo = url.slice(start + 3, at);
  const colon = userinfo.indexOf(':');
  return colon === -1 ? url : `${url.slice(0, start + 3)}${userinfo.slice(0, colon)}:***${url.slice(at)}`;
}

/** libpq's `?password=` (and `sslpassword=`) carry secrets in the query string too. */
function redactQuery(url: string): string {
  return url.replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}

/** What a plain TCP connection to an address has seen so far. */
export type TcpSeen = { state: 'connecting' } | { state: 'open' } | { state: 'closed' } | { state: 'failed'; error: unknown };

/**
 * A plain TCP connection beside a client's own, which sends nothing: when the client has no answer,
 * it tells a silent network (never connected: a wrong host, or packets dropped) from a silent or
 * closing service (connected: something else listens there, or a proxy closes the connection).
 * A client retries or reconnects where this one only watches, so the two causes read alike in
 * every probe for the same address. Postgres and Kafka log nothing for a connection closed unused.
 */
export function watchTcp(host: string, port: number): { seen(): TcpSeen; stop(): void } {
  let seen: TcpSeen = { state: 'connecting' };
  const socket = createConnection({ host, port });
  socket.once('connect', () => {
    seen = { state: 'open' };
  });
  socket.once('error', (error: unknown) => {
    if (seen.state === 'connecting') seen = { state: 'failed', error };
  });
  socket.once('close', () => {
    if (seen.state === 'open') seen = { state: 'closed' };
  });
  return {
    seen: () => seen,
    stop() {
      socket.removeAllListeners();
      // An error of the closing socket (a reset) has no one left to tell.
      socket.on('error', () => {});
      socket.destroy();
    },
  };
}

/**
 * Why `service` at an address gave no answer, from what `watchTcp` saw there, with the fix for
 * `setting`; undefined when the connection itself failed, which the client's own error says.
 */
export function silenceCause(seen: TcpSeen, service: string, setting: string): string | undefined {
  switch (seen.state) {
    case 'connecting':
      return `no connection (a wrong host, or a firewall dropping packets): check the host and port in ${setting}`;
    case 'open':
      return `the connection was accepted, but nothing answered as ${service} (another service on that port, or an overloaded server): check the port in ${setting}`;
    case 'closed':
      return `the connection was accepted, then closed without an answer (not ${service} there, or a proxy or firewall closing it): check the host and port in ${setting}`;
    case 'failed':
      return undefined;
  }
}
