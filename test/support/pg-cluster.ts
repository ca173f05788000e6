import { chownSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { restartablePort } from './ports.ts';
import { childPids } from './processes.ts';

/**
 * A Postgres cluster of its own (initdb into a temp dir, postgres on a free loopback port) that a
 * fault test may stop, kill and start: the machine's shared server is never touched.
 */
export interface PgCluster {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  start(): Promise<void>;
  /** `pg_ctl stop -m <mode>`: `immediate` is the abrupt stop (no checkpoint, sessions cut). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** SIGSTOP (or SIGCONT) to the server and all its processes: a server that hangs without closing anything. */
  freeze(): void;
  thaw(): void;
  /** Terminates every session of the given application_name; resolves with how many. */
  terminate(applicationName: string): Promise<number>;
  destroy(): Promise<void>;
}

const BIN = process.env.SLUICE_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export function pgBinariesAvailable(): boolean {
  return existsSync(join(BIN, 'initdb')) && existsSync(join(BIN, 'pg_ctl'));
}

/** initdb refuses to run as root: as root, run the binaries as the `postgres` user. */
function asOwner(cmd: string[]): string[] {
  return process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', ...cmd] : cmd;
}

async function run(cmd: string[]): Promise<void> {
  const proc = Bun.spawn({ cmd: asOwner(cmd), stdout: 'pipe', stderr: 'pipe' });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited ${code}: ${out}${err}`);
}

export async function startPgCluster(): Promise<PgCluster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-pg-'));
  if (process.getuid?.() === 0) {
    const pgUser = Bun.spawnSync({ cmd: ['id', '-u', 'postgres'] });
    const pgGroup = Bun.spawnSync({ cmd: ['id', '-g', 'postgres'] });
    chownSync(dataDir, Number(pgUser.stdout.toString().trim()), Number(pgGroup.stdout.toString().trim()));
  }
  await run([join(BIN, 'initdb'), '-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
  const port = await restartablePort();
  const opts = `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const logFile = join(dataDir, 'server.log');

  const cluster: PgCluster = {
    url,
    port,
    dataDir,
    async start() {
      try {
        await run([join(BIN, 'pg_ctl'), '-D', dataDir, '-o', opts, '-l', logFile, '-w', '-t', '60', 'start']);
      } catch (err) {
        // pg_ctl only says "examine the log output": the reason is in the server's log.
        const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
        throw new Error(`${(err as Error).message}\nserver log (last lines):\n${tail}`);
      }
    },
    async stop(mode = 'fast') {
      await run([join(BIN, 'pg_ctl'), '-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
    },
    freeze: () => signalAll('SIGSTOP'),
    thaw: () => signalAll('SIGCONT'),
    async terminate(applicationName) {
      const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'sluice-fault' } });
      try {
        // OFFSET 0 keeps the filter apart from the call: the planner may not evaluate
        // pg_terminate_backend for sessions the filter would have left out (this one included).
        const rows = await sql<{ ok: boolean }[]>`
          SELECT pg_terminate_backend(pid) AS ok FROM (
            SELECT pid FROM pg_stat_activity
            WHERE application_name = ${applicationName} AND pid <> pg_backend_pid() OFFSET 0
          ) s`;
        return rows.filter((r) => r.ok).length;
      } finally {
        await sql.end({ timeout: 2 });
      }
    },
    async destroy() {
      await cluster.stop('immediate').catch(() => {});
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  function signalAll(signal: 'SIGSTOP' | 'SIGCONT'): void {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    for (const p of [pid, ...childPids(pid)]) process.kill(p, signal);
  }
  await cluster.start();
  return cluster;
}
