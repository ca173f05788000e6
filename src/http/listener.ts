import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'bun';
import { ConfigError, SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';

export interface ListenerOptions {
  host: string;
  port: number;
  tls: { certFile: string; keyFile: string } | undefined;
  fetch: (req: Request) => Response | Promise<Response>;
  maxRequestBodySize: number;
  /** Several worker processes of one node share the port (SO_REUSEPORT): the kernel spreads connections among them. */
  reusePort?: boolean;
  log: Logger;
}

export interface Listener {
  readonly url: string;
  readonly port: number;
  /**
   * Re-reads the certificate and key (SIGHUP after a renewal). Bun cannot swap the certificate of
   * a running server, so a new server takes the port beside the old one (SO_REUSEPORT) and the old
   * one stops accepting and finishes its requests. A bad file is reported and the old server kept.
   */
  reloadTls(): boolean;
  /** Requests being answered now (a slow body still arriving counts). */
  readonly pendingRequests: number;
  stop(): Promise<void>;
}

type Tls = { cert: string; key: string };

/**
 * Reads the PEM files and checks that the key is the certificate's. A missing or unreadable file is
 * a `file_unavailable` SluiceError (it may yet appear: a mount, a renewal in progress); a file that
 * is no certificate or key, or a pair that does not match, is a ConfigError. Both name the setting.
 */
export function readTls(files: { certFile: string; keyFile: string }): Tls {
  const invalid = (setting: string, message: string): ConfigError => new ConfigError(`invalid configuration: ${message}`, [{ path: setting, message }]);
  const read = (setting: string, path: string): string => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const message = `${setting} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: point ${setting} at a readable PEM file`;
      throw new SluiceError('file_unavailable', message, { details: [{ path: setting, message }] });
    }
    if (!text.includes('-----BEGIN')) throw invalid(setting, `${setting} ${path}: not a PEM file (no -----BEGIN line): point ${setting} at the PEM ${setting === 'SLUICE_TLS_CERT_FILE' ? 'certificate (chain)' : 'private key'}`);
    return text;
  };
  const tls = { cert: read('SLUICE_TLS_CERT_FILE', files.certFile), key: read('SLUICE_TLS_KEY_FILE', files.keyFile) };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(tls.cert);
  } catch (err) {
    throw invalid('SLUICE_TLS_CERT_FILE', `SLUICE_TLS_CERT_FILE ${files.certFile}: not a readable certificate (${(err as Error).message}): point SLUICE_TLS_CERT_FILE at the PEM certificate (chain)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(tls.key);
  } catch (err) {
    throw invalid('SLUICE_TLS_KEY_FILE', `SLUICE_TLS_KEY_FILE ${files.keyFile}: not a readable private key (${(err as Error).message}; an encrypted key is not supported): point SLUICE_TLS_KEY_FILE at the unencrypted PEM key`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw invalid(
      'SLUICE_TLS_KEY_FILE',
      `SLUICE_TLS_KEY_FILE ${files.keyFile} is not the key of the certificate in SLUICE_TLS_CERT_FILE ${files.certFile}: point SLUICE_TLS_KEY_FILE at that certificate's key, or SLUICE_TLS_CERT_FILE at the certificate issued for this key`,
    );
  }
  return tls;
}

/**
 * Bun's own default, set explicitly: left to its default, Bun writes a plain-text warning to stderr
 * for every request it times out (a body that stops arriving), among sluice's JSON log lines.
 */
const IDLE_TIMEOUT_S = 10;

function serveOn(host: string, port: number, fetch: ListenerOptions['fetch'], maxRequestBodySize: number, tls: Tls | undefined, shared = false): Server<undefined> {
  try {
    // TLS reload binds a second server beside the first: it needs the port shared too.
    const reusePort = shared || tls !== undefined;
    return Bun.serve({ hostname: host, port, fetch, maxRequestBodySize, idleTimeout: IDLE_TIMEOUT_S, ...(tls === undefined ? {} : { tls }), ...(reusePort ? { reusePort } : {}) });
  } catch (err) {
    // The pair was checked by readTls: what is left is the address, which may yet come free.
    const message = `SLUICE_HOST ${host} / SLUICE_PORT ${port}: cannot listen: ${(err as Error).message}: stop what holds the port, or set SLUICE_PORT (and SLUICE_HOST) to an address this host can bind`;
    throw new SluiceError('address_unavailable', message, { details: [{ path: 'SLUICE_PORT', message }] });
  }
}

/**
 * Binds the HTTP address and lets it go at once: a busy port or an address not on this host is
 * found before the database and the processor start, with the error `listen` would throw. Returns
 * the port bound (the one the system chose for port 0: a supervisor gives it to all its workers).
 */
export function probeListen(host: string, port: number): number {
  const probe = serveOn(host, port, () => new Response(null, { status: 503 }), 0, undefined);
  const bound = probe.port ?? port;
  void probe.stop(true);
  return bound;
}

/** The HTTP(S) server of every role: plain HTTP, or HTTPS with Bun's own TLS when configured. */
export function listen(o: ListenerOptions): Listener {
  const start = (port: number, tls: Tls | undefined): Server<undefined> => serveOn(o.host, port, o.fetch, o.maxRequestBodySize, tls, o.reusePort);
  let server = start(o.port, o.tls === undefined ? undefined : readTls(o.tls));
  const port = server.port ?? o.port;
  const scheme = o.tls === undefined ? 'http' : 'https';
  const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;
  const retired: Promise<void>[] = [];
  return {
    url: `${scheme}://${host}:${port}`,
    port,
    reloadTls() {
      if (o.tls === undefined) return false;
      try {
        const next = start(port, readTls(o.tls));
        const old = server;
        server = next;
        retired.push(old.stop());
        o.log.info('TLS certificate reloaded', { cert_file: o.tls.certFile });
        return true;
      } catch (err) {
        const errors = err instanceof SluiceError ? (err.details?.map((d) => d.message) ?? [err.message]) : [String(err)];
        o.log.error('TLS certificate rejected; keeping the previous one', { errors });
        return false;
      }
    },
    get pendingRequests() {
      return server.pendingRequests;
    },
    async stop() {
      await Promise.all([server.stop(), ...retired]);
    },
  };
}
