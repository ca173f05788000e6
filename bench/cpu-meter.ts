// CPU time per event of each process group taking part in a measurement, read from /proc over the
// measured interval. README.md, "Benchmarks", "CPU per event".
import type { Sql } from '../src/outbox/db.ts';
import { allStats, clockTicksPerSecond, commandLine, procReadable, processTree, readStat, type ProcStat } from './proc.ts';

/**
 * `app` is the process(es) under test: sluice's for a scenario, the stand-in's for a ceiling (the raw
 * Bun.serve server, the bench's own insert client, Kafka's Java producer). `postgres` is the server's
 * processes that work for the bench database; `kafka` the broker's JVM.
 */
export const GROUPS = ['app', 'postgres', 'kafka'] as const;
export type Group = (typeof GROUPS)[number];

/** Picks a group's pids out of one snapshot of /proc. */
export type Selector = (stats: ProcStat[]) => number[];

export interface CpuFigures {
  interval_s: number;
  /** Events completed in the interval (requests × events per request, records read, ...). */
  events: number;
  /** CPU microseconds per event; null where the group takes no part or could not be read. */
  us_per_event: Record<Group, number | null>;
  /** Cores kept busy on average over the interval (CPU seconds / interval seconds). */
  cores: Record<Group, number | null>;
}

export interface CpuMeter {
  /** Reads the groups a last time and divides by `events`. */
  stop(events: number): CpuFigures;
}

// Often enough that a process which exits in the interval (a pool connection closed, a worker) loses
// little of its CPU time; reading a few hundred small /proc files costs a few milliseconds.
const POLL_MS = 500;

/**
 * Starts counting now. Each process is followed by pid and start time: one present at the start
 * counts from its value then, one that appears later from zero (all of its CPU time is in the interval),
 * one that exits keeps its last value read.
 */
export function startCpuMeter(selectors: Partial<Record<Group, Selector>>): CpuMeter {
  const started = performance.now();
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  let initial = true;
  const poll = (): void => {
    const stats = allStats();
    for (const group of GROUPS) {
      const select = selectors[group];
      if (select === undefined) continue;
      const wanted = new Set(select(stats));
      for (const s of stats) {
        if (!wanted.has(s.pid)) continue;
        const key = `${group}:${s.pid}:${s.startTicks}`;
        if (!first.has(key)) first.set(key, initial ? s.cpuTicks : 0);
        last.set(key, s.cpuTicks);
      }
    }
    initial = false;
  };
  poll();
  const timer = setInterval(poll, POLL_MS);
  return {
    stop(events) {
      clearInterval(timer);
      poll();
      const intervalS = (performance.now() - started) / 1000;
      const ticks = clockTicksPerSecond();
      const us_per_event = { app: null, postgres: null, kafka: null } as Record<Group, number | null>;
      const cores = { app: null, postgres: null, kafka: null } as Record<Group, number | null>;
      for (const group of GROUPS) {
        if (selectors[group] === undefined) continue;
        let used = 0;
        for (const [key, value] of last) if (key.startsWith(`${group}:`)) used += value - (first.get(key) ?? 0);
        const seconds = used / ticks;
        us_per_event[group] = events > 0 ? (seconds * 1e6) / events : null;
        cores[group] = seconds / intervalS;
      }
      return { interval_s: intervalS, events, us_per_event, cores };
    },
  };
}

/** A process and everything it started. */
export const treeOf =
  (pid: number): Selector =>
  (stats) =>
    processTree(pid, stats).map((s) => s.pid);

// Postgres's shared writers: they flush the WAL and data pages the bench's backends dirty. On a server
// shared with other databases they work for those too (use a private server for exact figures).
const SHARED_WRITERS = /\b(walwriter|checkpointer|background writer)\b/;

/**
 * The processes of the Postgres server behind `sql` that work for database `name`: its backends
 * (any connection, autovacuum included) and the server's WAL and page writers. Undefined when the
 * server's processes cannot be read here (another machine, another user's /proc).
 */
export async function postgresSelector(sql: Sql, name: string): Promise<Selector | undefined> {
  if (!procReadable()) return undefined;
  const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  const postmaster = row === undefined ? undefined : readStat(row.pid)?.ppid;
  if (postmaster === undefined) return undefined;
  return (stats) =>
    stats
      .filter((s) => s.ppid === postmaster)
      .filter((s) => {
        const title = commandLine(s.pid);
        return title.split(' ').includes(name) || SHARED_WRITERS.test(title);
      })
      .map((s) => s.pid);
}

/** The local broker's JVM: the child of this process running `kafka.Kafka` with the broker's data directory. */
export function brokerSelector(dataDir: string): Selector | undefined {
  if (!procReadable()) return undefined;
  const jvm = processTree(process.pid).find((s) => {
    const cmd = commandLine(s.pid);
    return cmd.includes('kafka.Kafka') && cmd.includes(dataDir);
  });
  return jvm === undefined ? undefined : treeOf(jvm.pid);
}
