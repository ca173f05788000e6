import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { type ComponentState, within } from './core/component-state.ts';
import { networkCause, redactUrl } from './network-cause.ts';
import { partitionsMismatch, recordedPartitions } from './outbox/identity.ts';

/**
 * Probes of what sluice depends on, each bounded by a timeout and answering in one line that names
 * the setting at fault and how to fix it. `sluice check` prints them; `serve` runs the same ones
 * before it starts anything, so a bad setting stops it with that line instead of a stack trace.
 */
export interface ProbeResult {
  ok: boolean;
  /** What was found (ok) or what is wrong, with the setting and the fix (not ok). */
  detail: string;
  /** Not ok because the configuration itself is invalid (exit 2), not because a component is unusable (exit 1). */
  invalid?: boolean;
}

const seconds = (ms: number): string => `${Math.round(ms / 100) / 10}s`;

/**
 * A Postgres server at DATABASE_URL answers a query; given `partitions`, an outbox there that
 * recorded another SLUICE_PARTITIONS is invalid configuration, as it is to `serve`.
 */
export async function probeDatabase(url: string, timeoutMs: number, partitions?: number): Promise<ProbeResult> {
  const where = `DATABASE_URL ${redactUrl(url)}`;
  // postgres.js's own connect_timeout never fires for a host that drops packets (seen under Bun):
  // the race below is what bounds the wait.
  const sql = postgres(url, { max: 1, connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)), onnotice: () => {}, connection: { application_name: 'sluice-check' } });
  const answer = async (): Promise<ProbeResult> => {
    const [row] = await sql<{ version: string }[]>`SELECT current_setting('server_version') AS version`;
    if (partitions !== undefined) {
      const recorded = await recordedPartitions(sql);
      if (typeof recorded === 'number' && recorded !== partitions) {
        return { ok: false, invalid: true, detail: partitionsMismatch(partitions, recorded) };
      }
    }
    return { ok: true, detail: `postgres ${row?.version ?? '?'} at ${redactUrl(url)}` };
  };
  const query = answer().catch((err: unknown): ProbeResult => ({ ok: false, detail: `${where}: ${databaseProblem(err)}` }));
  const result = await within(query, timeoutMs, () => ({
    ok: false,
    detail: `${where}: no answer within ${seconds(timeoutMs)} (a wrong host, or a firewall dropping packets): check the host and port in DATABASE_URL`,
  }));
  void sql.end({ timeout: 0 }).catch(() => {});
  return result;
}

function databaseProblem(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === '3D000') return `${message}: create it (createdb) or fix the database name in DATABASE_URL`;
  if (code === '28000' || code === '28P01') return `${message}: fix the user or password in DATABASE_URL (or the server's pg_hba.conf)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `${networkCause(err)}: fix the host in DATABASE_URL`;
  if (code === 'ECONNREFUSED') return `${networkCause(err)}: start Postgres there, or fix the host and port in DATABASE_URL`;
  return `${networkCause(err)}: check DATABASE_URL and that the server accepts connections`;
}

const OUTBOX_CHECK_MS = 1_500;

/**
 * /readyz's outbox component: the database answers `query`, or what is wrong, naming DATABASE_URL
 * (or the embedded database when it is unset) and the cause. Bounded below /readyz's own 2 s, so
 * a silent server is named too.
 */
export async function outboxState(query: () => PromiseLike<unknown>, url: string | undefined): Promise<ComponentState> {
  const where = url === undefined ? 'the embedded database (no DATABASE_URL; SLUICE_DATA_DIR)' : `DATABASE_URL ${redactUrl(url)}`;
  const answer = Promise.resolve()
    .then(query)
    .then(
      (): ComponentState => ({ ok: true }),
      (err: unknown): ComponentState => ({ ok: false, detail: `${where}: ${url === undefined ? networkCause(err) : databaseProblem(err)}` }),
    );
  return within(answer, OUTBOX_CHECK_MS, () => ({
    ok: false,
    detail: `${where}: no answer within ${seconds(OUTBOX_CHECK_MS)}${url === undefined ? '' : ': check that the server at DATABASE_URL is up and reachable'}`,
  }));
}

/** A Kafka cluster at KAFKA_BROKERS answers a metadata request. Returns its cluster id when it does. */
export async function probeKafka(brokers: readonly string[], timeoutMs: number): Promise<ProbeResult & { clusterId?: string; cause?: string }> {
  const where = `KAFKA_BROKERS ${brokers.join(',')}`;
  // Loaded when probed: an ingest process, which never talks to Kafka, is ~60 MiB smaller without it.
  const { Admin } = await import('@platformatic/kafka');
  const admin = new Admin({
    clientId: 'sluice-check',
    bootstrapBrokers: [...brokers],
    retries: 0,
    connectTimeout: timeoutMs,
    timeout: timeoutMs,
  });
  const probe = admin.metadata({ topics: [] }).then(
    (m): ProbeResult & { clusterId?: string } => ({ ok: true, clusterId: m.id, detail: `${m.brokers.size} broker(s), cluster ${m.id}` }),
    (err: unknown): ProbeResult & { cause: string } => {
      const cause = networkCause(err);
      return { ok: false, cause, detail: `${where}: ${cause}: start Kafka there, or fix KAFKA_BROKERS` };
    },
  );
  const result = await within<ProbeResult & { clusterId?: string; cause?: string }>(probe, timeoutMs, () => ({
    ok: false,
    cause: `no answer within ${seconds(timeoutMs)}`,
    detail: `${where}: no answer within ${seconds(timeoutMs)}: check the hosts and ports in KAFKA_BROKERS`,
  }));
  void admin.close().catch(() => {});
  return result;
}

/**
 * `dir` can be created and written, and a write made durable (fsync): the journal's needs, and
 * the embedded database's. `setting` names the variable that chose the directory.
 */
export function probeWritableDir(setting: string, dir: string): ProbeResult {
  const probe = join(dir, `.sluice-probe-${process.pid}`);
  try {
    mkdirSync(dir, { recursive: true });
    const fd = openSync(probe, 'w');
    try {
      writeSync(fd, 'probe\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    rmSync(probe, { force: true });
    return { ok: true, detail: `${dir} is writable` };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOTDIR' || e.code === 'EEXIST' ? 'a file is in the way (not a directory)' : e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied' : e.code === 'EROFS' ? 'read-only file system' : e.code === 'ENOSPC' ? 'no space left on the device' : (e.message ?? String(err));
    return { ok: false, detail: `${setting} ${dir}: ${why}${e.path !== undefined && e.path !== dir ? ` (at ${e.path})` : ''}: point ${setting} at a directory sluice can write` };
  }
}
