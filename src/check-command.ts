import { join } from 'node:path';
import type { Config } from './config.ts';
import { probeListen, readTls } from './http/listener.ts';
import { leftBehindBroker, portProblem } from './kafka/local-broker.ts';
import { ownBrokerDataDir, ownBrokerDataDirInUse } from './roles/own-broker.ts';
import { probeDatabase, probeKafka, probeWritableDir, type ProbeResult } from './probes.ts';
import { loadTenantsFile } from './tenants.ts';
import { journalReadiness } from './ingest/journal-readiness.ts';
import { ownTopics } from './tenant-metrics.ts';
import { ConfigError, SluiceError } from './errors.ts';

/**
 * `sluice check`: every component probed side by side, each within `timeoutMs`, one line each.
 * Returns what `serve` would exit with: 2 when a file's contents are invalid configuration (the
 * tenants file, the TLS pair), else 1 when a component is not usable, else 0.
 */
export async function runCheck(config: Config, timeoutMs: number, out: (line: string) => void): Promise<number> {
  const results: [string, Promise<ProbeResult>][] = [
    ['tenants', Promise.resolve(checkTenants(config))],
    ...(config.tls === undefined ? [] : [['tls', Promise.resolve(checkTls(config.tls))] as [string, Promise<ProbeResult>]]),
    ['journal', checkJournal(join(config.journal.dir, config.nodeId), config.http.maxBodyBytes)],
    [
      'database',
      config.db.url === undefined
        ? Promise.resolve(embeddedNote(probeWritableDir('SLUICE_DATA_DIR', config.db.dataDir)))
        : probeDatabase(config.db.url, timeoutMs, config.partitions),
    ],
    ['kafka', config.kafka.brokers === undefined ? localBroker(config) : probeKafka(config.kafka.brokers, timeoutMs)],
    ['listen', Promise.resolve(checkListen(config.http.host, config.http.port))],
  ];
  out(`config     ok    ${config.writeMode} mode, node ${config.nodeId}, ${config.http.host}:${config.http.port}${config.tls === undefined ? '' : ' (TLS)'}`);
  let code = 0;
  for (const [name, pending] of results) {
    const r = await pending;
    if (!r.ok) code = Math.max(code, r.invalid === true ? 2 : 1);
    out(`${name.padEnd(10)} ${r.ok ? 'ok  ' : 'FAIL'}  ${r.detail}`);
  }
  return code;
}

/**
 * A check that throws a SluiceError when it fails: its details become the FAIL line, and a
 * ConfigError marks it invalid configuration (exit 2) rather than an unusable component (exit 1).
 */
function configured(check: () => string): ProbeResult {
  try {
    return { ok: true, detail: check() };
  } catch (err) {
    if (!(err instanceof SluiceError)) throw err;
    const detail = err.details?.map((d) => d.message).join('; ') ?? err.message;
    return { ok: false, detail, invalid: err instanceof ConfigError };
  }
}

function checkTenants(config: Config): ProbeResult {
  const file = config.tenantsFile;
  if (file === undefined) return { ok: true, detail: 'no SLUICE_TENANTS_FILE: open mode (loopback only, no tokens)' };
  return configured(() => `${file}: ${loadTenantsFile(file, ownTopics(config)).tenants.size} tenant(s)`);
}

function checkTls(files: { certFile: string; keyFile: string }): ProbeResult {
  return configured(() => {
    readTls(files);
    return `${files.certFile} and its key ${files.keyFile} are a matching PEM pair`;
  });
}

function checkListen(host: string, port: number): ProbeResult {
  return configured(() => {
    probeListen(host, port);
    return `${host}:${port} can be bound${port === 0 ? ' (SLUICE_PORT 0: any free port)' : ''}`;
  });
}

/** Writable, and with room for one largest request: what serve's /readyz asks of the journal. */
async function checkJournal(dir: string, maxBodyBytes: number): Promise<ProbeResult> {
  const writable = probeWritableDir('SLUICE_JOURNAL_DIR', dir);
  if (!writable.ok) return writable;
  const room = await journalReadiness(dir, undefined, maxBodyBytes);
  return room.ok ? writable : { ok: false, detail: `SLUICE_JOURNAL_DIR ${dir}: ${room.detail ?? 'not ready'}: free space there, or point SLUICE_JOURNAL_DIR at a disk with room` };
}

function embeddedNote(dir: ProbeResult): ProbeResult {
  return dir.ok ? { ok: true, detail: `no DATABASE_URL: embedded database in ${dir.detail}` } : dir;
}

async function localBroker(config: Config): Promise<ProbeResult> {
  // A sluice running on this data directory: the cause to name, not the port its broker holds.
  const inUse = ownBrokerDataDirInUse(config);
  if (inUse !== undefined) return { ok: false, detail: inUse.message };
  const port = config.kafka.localPort;
  const problem = await portProblem(port);
  const ok = `no KAFKA_BROKERS: serve starts a local broker on 127.0.0.1:${port} (SLUICE_KAFKA_LOCAL_PORT)`;
  if (problem === undefined) return { ok: true, detail: ok };
  const leftBehind = leftBehindBroker(ownBrokerDataDir(config));
  return leftBehind !== undefined
    ? { ok: true, detail: `${ok}; it stops first the one an earlier sluice left running there (pid ${leftBehind})` }
    : { ok: false, detail: `SLUICE_KAFKA_LOCAL_PORT ${port}: ${problem}: stop it, set SLUICE_KAFKA_LOCAL_PORT to a free port, or set KAFKA_BROKERS to use a broker you run` };
}
