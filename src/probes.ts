import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { type ComponentState, within } from './core/component-state.ts';
import { parseDatabaseUrl } from './config.ts';
import { networkCause, redactUrl, silenceCause, watchTcp } from './network-cause.ts';
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
  // loadConfig has refused such a URL already; postgres.js would throw on it, its message holding the URL.
  const parsed = parseDatabaseUrl(url);
  if ('problem' in parsed) return { ok: false, invalid: true, detail: `${where}: ${parsed.problem}` };
  const [only] = parsed.hosts;
  // One host over TCP is watched (postgres.js reconnects silently when a peer closes on it); a
  // socket directory or a host list gets the plain message.
  const watch = parsed.hosts.length === 1 && only !== undefined && !only.host.startsWith('/') ? watchTcp(only.host, only.port) : undefined;
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
  const query = answer().catch((err: unknown): ProbeResult => ({ ok: false, detail: `${where}: ${closedAtConnect(err) ?? databaseProblem(err)}` }));
  const result = await within(query, timeoutMs, () => {
    const why = watch === undefined ? undefined : silenceCause(watch.seen(), 'Postgres', 'DATABASE_URL');
    return {
      ok: false,
      detail: `${where}: no answer within ${seconds(timeoutMs)}${why === undefined ? ' (a wrong host, or a firewall dropping packets): check the host and port in DATABASE_URL' : `: ${why}`}`,
    };
  });
  watch?.stop();
  void sql.end({ timeout: 0 }).catch(() => {});
  return result;
}

/**
 * A peer that accepts the connection and closes it before Postgres's first answer: named as the
 * Kafka probe names it for the same address (a probe opens its own connection, so no live session
 * of sluice's was cut here).
 */
function closedAtConnect(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return code === 'ECONNRESET' || code === 'CONNECTION_CLOSED' || code === 'CONNECTION_ENDED' ? silenceCause({ state: 'closed' }, 'Postgres', 'DATABASE_URL') : undefined;
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
  const watches = brokers.map((b) => ({ broker: b, watch: watchTcp(b.slice(0, b.lastIndexOf(':')), Number(b.slice(b.lastIndexOf(':') + 1))) }));
  // The client's time-out says nothing of why: what the watches saw does.
  const silence = (): string | undefined => {
    const causes = watches.map((w) => ({ broker: w.broker, cause: silenceCause(w.watch.seen(), 'a Kafka broker', 'KAFKA_BROKERS') }));
    if (causes.some((c) => c.cause === undefined)) return undefined;
    return causes.length === 1 ? causes[0]?.cause : causes.map((c) => `${c.broker}: ${c.cause}`).join('; ');
  };
  const waited = `no answer within ${seconds(timeoutMs)}`;
  const probe = admin.metadata({ topics: [] }).then(
    (m): ProbeResult & { clusterId?: string } => ({ ok: true, clusterId: m.id, detail: `${m.brokers.size} broker(s), cluster ${m.id}` }),
    (err: unknown): ProbeResult & { cause: string } => {
      const client = networkCause(err);
      const timedOut = /timed out/i.test(client);
      // The client saw the peer close: that is the cause, whatever the watch has seen by now.
      const closed = /^Connection closed/.test(client) ? silenceCause({ state: 'closed' }, 'a Kafka broker', 'KAFKA_BROKERS') : undefined;
      const why = closed ?? (timedOut ? silence() : undefined);
      const cause = why === undefined ? client : timedOut ? `${waited}: ${why}` : why;
      return { ok: false, cause, detail: `${where}: ${cause}${why === undefined ? ': start Kafka there, or fix KAFKA_BROKERS' : ''}` };
    },
  );
  const result = await within<ProbeResult & { clusterId?: string; cause?: string }>(probe, timeoutMs, () => {
    const why = silence();
    return { ok: false, cause: why === undefined ? waited : `${waited}: ${why}`, detail: `${where}: ${waited}: ${why ?? 'check the hosts and ports in KAFKA_BROKERS'}` };
  });
  for (const w of watches) w.watch.stop();
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
      // Also when the write failed (a full disk creates the file and refuses its byte).
      rmSync(probe, { force: true });
    }
    return { ok: true, detail: `${dir} is writable` };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOTDIR' || e.code === 'EEXIST' ? 'a file is in the way (not a directory)' : e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied' : e.code === 'EROFS' ? 'read-only file system' : e.code === 'ENOSPC' ? 'no space left on the device' : (e.message ?? String(err));
    return { ok: false, detail: `${setting} ${dir}: ${why}${e.path !== undefined && e.path !== dir ? ` (at ${e.path})` : ''}: point ${setting} at a directory sluice can write` };
  }
}
