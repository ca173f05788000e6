import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_MEMORY_MIB } from '../src/config.ts';
import type { WriteMode } from '../src/core/modes.ts';
import { engineMemoryEnv } from '../src/roles/engine-memory.ts';
import { WORKERS_SETTING } from './scenarios.ts';
import { startServer, type ServerProcess } from './server-process.ts';

const ROOT = resolve(import.meta.dir, '..');

export interface SluiceSettings {
  command: 'serve' | 'ingest';
  /** Undefined: the embedded database, in `dataDir`. */
  databaseUrl: string | undefined;
  /** Where the embedded database lives; kept across starts so a second start reopens it. */
  dataDir: string;
  brokers: string[];
  tenantsFile: string;
  topic: string;
  mode: WriteMode;
  guarantee: 'exactly_once' | 'at_least_once';
  /** Passed as WORKERS_SETTING (bench/scenarios.ts) when given. */
  workers?: number;
  /** Where its journal and log go; a fresh journal directory is made inside. */
  workDir: string;
  /** Names the log file (`sluice-<label>.log`). */
  label: string;
  /**
   * Runs it under `bun --cpu-prof`, writing its profile here when it exits; with its engine sized as
   * sluice sizes it, which it does not do itself under the profiler (src/roles/engine-memory.ts).
   */
  profileDir?: string;
}

/**
 * The caller's environment less what would change the figures: every SLUICE_* setting, the database
 * and brokers, and the JavaScript engine's and allocator's options (BUN_JSC_*, MIMALLOC_*: sluice
 * sizes its heap and sets its allocator's purge itself, from SLUICE_MEMORY_MIB's default, as it does for a user).
 */
export function inheritedEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  return Object.fromEntries(
    Object.entries(env).filter(([k]) => !k.startsWith('SLUICE_') && !k.startsWith('BUN_JSC_') && !k.startsWith('MIMALLOC_') && k !== 'DATABASE_URL' && k !== 'KAFKA_BROKERS'),
  );
}

/** The node's `sluice listening` line, not one of its workers': its URL is the first group. */
export const NODE_LISTENING = /"msg":"sluice listening"(?![^\n]*"worker":)[^\n]*"url":"([^"]+)"/;

/**
 * `bun src/cli.ts serve` (or `ingest`) as a child process of its own (so its VmHWM is its own peak), on
 * a free loopback port, with a fresh journal and none of the developer's shell settings (inheritedEnv).
 */
export async function startSluice(s: SluiceSettings): Promise<ServerProcess> {
  const journalDir = mkdtempSync(join(s.workDir, 'journal-'));
  const inherited = inheritedEnv(process.env);
  const server = await startServer({
    cmd: ['bun', ...(s.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${s.profileDir}`]), 'src/cli.ts', s.command],
    cwd: ROOT,
    logPath: join(s.workDir, `sluice-${s.label}.log`),
    // Under a supervisor (several workers, or serve's processor in a process of its own) each worker
    // logs its own line, with its `worker`; the node's, without, comes once every process started.
    ready: NODE_LISTENING,
    env: {
      ...inherited,
      ...(s.databaseUrl === undefined ? { SLUICE_DATA_DIR: s.dataDir } : { DATABASE_URL: s.databaseUrl }),
      ...(s.command === 'serve' ? { KAFKA_BROKERS: s.brokers.join(','), SLUICE_GUARANTEE: s.guarantee } : {}),
      ...(s.workers !== undefined && WORKERS_SETTING !== undefined ? { [WORKERS_SETTING]: String(s.workers) } : {}),
      SLUICE_HOST: '127.0.0.1',
      SLUICE_PORT: '0',
      SLUICE_NODE_ID: 'bench',
      SLUICE_JOURNAL_DIR: journalDir,
      SLUICE_WRITE_MODE: s.mode,
      SLUICE_KAFKA_TOPIC: s.topic,
      SLUICE_TENANTS_FILE: s.tenantsFile,
      ...(s.profileDir === undefined ? {} : engineMemoryEnv(DEFAULT_MEMORY_MIB, {})),
    },
  });
  return {
    ...server,
    async stop(graceMs) {
      await server.stop(graceMs);
      rmSync(journalDir, { recursive: true, force: true });
    },
  };
}
