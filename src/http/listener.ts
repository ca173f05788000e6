import { readFileSync } from 'node:fs';
import type { Server } from 'bun';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';

export interface ListenerOptions {
  host: string;
  port: number;
  tls: { certFile: string; keyFile: string } | undefined;
  fetch: (req: Request) => Response | Promise<Response>;
  maxRequestBodySize: number;
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
  stop(): Promise<void>;
}

type Tls = { cert: string; key: string };

/** Reads the PEM files; a missing or unreadable one is a ConfigError naming its setting. */
export function readTls(files: { certFile: string; keyFile: string }): Tls {
  const read = (setting: string, path: string): string => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const message = `${setting} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: point ${setting} at a readable PEM file`;
      throw new ConfigError(`invalid configuration: ${message}`, [{ path: setting, message }]);
    }
    if (!text.includes('-----BEGIN')) {
      const message = `${setting} ${path}: not a PEM file (no -----BEGIN line)`;
      throw new ConfigError(`invalid configuration: ${message}`, [{ path: setting, message }]);
    }
    return text;
  };
  return { cert: read('SLUICE_TLS_CERT_FILE', files.certFile), key: read('SLUICE_TLS_KEY_FILE', files.keyFile) };
}

/** The HTTP(S) server of every role: plain HTTP, or HTTPS with Bun's own TLS when configured. */
export function listen(o: ListenerOptions): Listener {
  const start = (port: number, tls: Tls | undefined): Server<undefined> => {
    try {
      return Bun.serve({
        hostname: o.host,
        port,
        fetch: o.fetch,
        maxRequestBodySize: o.maxRequestBodySize,
        ...(tls === undefined ? {} : { tls, reusePort: true }),
      });
    } catch (err) {
      const message = `cannot serve on ${o.host}:${port}: ${(err as Error).message}${tls === undefined ? '' : ' (check that SLUICE_TLS_KEY_FILE is the key of SLUICE_TLS_CERT_FILE)'}: set SLUICE_HOST and SLUICE_PORT to an address this host can bind`;
      throw new ConfigError(`invalid configuration: ${message}`, [{ path: 'SLUICE_PORT', message }]);
    }
  };
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
        const errors = err instanceof ConfigError ? err.details?.map((d) => d.message) : [String(err)];
        o.log.error('TLS certificate rejected; keeping the previous one', { errors });
        return false;
      }
    },
    async stop() {
      await Promise.all([server.stop(), ...retired]);
    },
  };
}
