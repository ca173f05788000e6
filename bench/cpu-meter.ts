// CPU time per event of each process group taking part in a measurement, read from /proc over the
// measured interval. README.md, "Benchmarks", "CPU per event".
import type { Sql } from '../src/outbox/db.ts';
import { allStats, clockTicksPerSecond, commandLine, machineTicks, procReadable, processTree, readStat, threadStats, type MachineTicks, type ProcStat } from './proc.ts';

/**
 * `app` is the process(es) under test: sluice's for a scenario, the stand-in's for a ceiling (the raw
 * Bun.serve server, the bench's own insert client, Kafka's Java producer). `postgres` is the server's
 * processes that work for the bench database; `kafka` the broker's JVM. `load` is what drives and
 * observes the measurement where that is not `app`: wrk, the fixed-rate load process, the bench's own
 * request sender and Kafka reader.
 */
export const GROUPS = ['app', 'postgres', 'kafka', 'load'] as const;
export type Group = (typeof GROUPS)[number];
/** The groups that do an event's work, without the load generator: what the tables add up per event. */
export const WORK_GROUPS = ['app', 'postgres', 'kafka'] as const;
export type WorkGroup = (typeof WORK_GROUPS)[number];
/** A figure per group; `load` is absent from results written before it was measured. */
export type PerGroup = Record<WorkGroup, number | null> & { load?: number | null };

/** Picks a group's pids out of one snapshot of /proc. */
export type Selector = (stats: ProcStat[]) => number[];

/**
 * The part of `app`'s CPU time spent by its engine's own threads: `jit` its compilers, `gc` its
 * collector's helper threads (collection work on the JavaScript thread itself stays in the rest). A
 * short run of a just-started process pays for compiling its code; a long-lived one mostly does not.
 */
export type EngineThread = 'jit' | 'gc';
export type EngineFigures = Record<EngineThread, number>;

/** Which engine thread a thread's name says it is: JavaScriptCore's (Bun) or HotSpot's (the Java producer). */
export function engineThread(name: string): EngineThread | undefined {
  if (name === 'JITWorker' || /^C[12] CompilerThre/.test(name)) return 'jit';
  if (name === 'HeapHelper' || /^(GC Thread|G1 )/.test(name)) return 'gc';
  return undefined;
}

export interface CpuFigures {
  interval_s: number;
  /** Events completed in the interval (requests × events per request, records read, ...). */
  events: number;
  /** CPU microseconds per event; null where the group takes no part or could not be read. */
  us_per_event: PerGroup;
  /** Cores kept busy on average over the interval (CPU seconds / interval seconds). */
  cores: PerGroup;
  /** Of `app`'s µs per event, its engine threads'; absent from results written before it was measured. */
  app_engine?: EngineFigures;
  /** The whole machine over the interval; absent without /proc/stat and from results written before it was measured. */
  machine?: MachineFigures;
}

/**
 * The whole machine's cores kept busy over the interval (/proc/stat), beside the groups': whether the
 * measurement ran out of CPU, and what it cost that no process was charged with.
 */
export interface MachineFigures {
  /** Every core's busy time (user, nice, system, irq, softirq, steal) / the interval. */
  busy_cores: number;
  /** busy_cores minus every measured group's (load included): interrupts, kernel threads, processes no group selected, steal. */
  other_cores: number;
  /** Of busy_cores, network and block-device completion work done in softirq (loopback TCP among it). */
  softirq_cores: number;
  /** Of busy_cores, time the hypervisor gave to others while this machine wanted it. */
  steal_cores: number;
  /** Idle while some I/O was outstanding: not busy, but not free for the asking either. */
  iowait_cores: number;
}

/** The machine's figures between two reads of /proc/stat, given what the groups kept busy over the same interval. */
export function machineFigures(first: MachineTicks, last: MachineTicks, ticksPerSecond: number, intervalS: number, groupCores: number): MachineFigures {
  const cores = (ticks: number): number => ticks / ticksPerSecond / intervalS;
  const busy_cores = cores(last.busy - first.busy);
  return {
    busy_cores,
    other_cores: busy_cores - groupCores,
    softirq_cores: cores(last.softirq - first.softirq),
    steal_cores: cores(last.steal - first.steal),
    iowait_cores: cores(last.iowait - first.iowait),
  };
}

export interface CpuMeter {
  /** Reads the groups now, besides the reads every `pollMs`. */
  read(): void;
  /** Reads the groups a last time and divides by `events`. */
  stop(events: number): CpuFigures;
}

// Often enough that a process which exits in the interval (a pool connection closed, a worker) loses
// little of its CPU time; reading a few hundred small /proc files costs a few milliseconds.
const POLL_MS = 500;

/** One process in one group, as the meter saw it. */
interface Seen {
  group: Group;
  /** Its CPU ticks when first seen: its value then if present at the start, else 0. */
  first: number;
  last: number;
  /** Whether this process (the bench) is its parent: its whole CPU time shows in our reaped ticks once it exits. */
  ownChild: boolean;
}

/**
 * Starts counting now. Each process is followed by pid and start time, from the first read that selects
 * it to its end: one present at the start
 * counts from its value then, one that appears later from zero (all of its CPU time is in the interval),
 * one that exits keeps its last value read. A child of the bench that exits in the interval (wrk, the
 * Java producer, the fixed-rate load) would lose what it spent after the last read, up to POLL_MS of
 * CPU at its busiest, at its end: that tail is taken from the bench's own reaped-children ticks
 * (cutime + cstime), which count each waited-for child's whole life, and shared among the children
 * that exited in proportion to what was read of them (in equal parts when every read of them saw no
 * CPU time yet: a loaded machine can start a child and read it before it ran). Exact when one child
 * exits in the interval, as in every measurement of bench/run.ts.
 */
export function startCpuMeter(selectors: Partial<Record<Group, Selector>>, pollMs = POLL_MS): CpuMeter {
  const started = performance.now();
  const machineFirst = machineTicks();
  const seen = new Map<string, Seen>();
  // Every child of the bench seen, selected or not, so that one no group wants keeps its share of the tail.
  const children = new Map<string, { first: number; last: number }>();
  let present = new Set<string>();
  let reapedFirst: number | undefined;
  let reapedLast = 0;
  let initial = true;
  // The app's engine threads, by process, thread and start time: followed like processes, from their
  // first read to their last (compiler and collector threads live as long as their process).
  const engine = new Map<string, { kind: EngineThread; first: number; last: number }>();
  const pollThreads = (s: ProcStat): void => {
    for (const t of threadStats(s.pid)) {
      const kind = engineThread(t.name);
      if (kind === undefined) continue;
      const key = `${s.pid}:${s.startTicks}:${t.pid}:${t.startTicks}`;
      engine.set(key, { kind, first: engine.get(key)?.first ?? (initial ? t.cpuTicks : 0), last: t.cpuTicks });
    }
  };
  const poll = (): void => {
    const stats = allStats();
    present = new Set(stats.map((s) => `${s.pid}:${s.startTicks}`));
    for (const s of stats) {
      if (s.pid === process.pid) {
        reapedFirst ??= s.reapedTicks;
        reapedLast = s.reapedTicks;
      }
      if (s.ppid !== process.pid) continue;
      const key = `${s.pid}:${s.startTicks}`;
      children.set(key, { first: children.get(key)?.first ?? (initial ? s.cpuTicks : 0), last: s.cpuTicks });
    }
    for (const group of GROUPS) {
      const select = selectors[group];
      if (select === undefined) continue;
      const wanted = new Set(select(stats));
      for (const s of stats) {
        const key = `${group}:${s.pid}:${s.startTicks}`;
        // Once selected, followed to its end: an exiting process's command line reads empty, so a
        // selector by command line lets go of it just when its last CPU time is counted.
        if (!wanted.has(s.pid) && !seen.has(key)) continue;
        const first = seen.get(key)?.first ?? (initial ? s.cpuTicks : 0);
        seen.set(key, { group, first, last: s.cpuTicks, ownChild: s.ppid === process.pid });
        if (group === 'app') pollThreads(s);
      }
    }
    initial = false;
  };
  /** The ticks each group's exited children spent after their last read. */
  const tails = (): Map<Group, number> => {
    const out = new Map<Group, number>();
    const gone = (key: string): boolean => !present.has(key.slice(key.indexOf(':') + 1));
    const exited = [...children.entries()].filter(([key]) => !present.has(key));
    const readOfExited = exited.reduce((sum, [, c]) => sum + c.last, 0);
    const readBase = exited.reduce((sum, [, c]) => sum + c.last - c.first, 0);
    const tail = (reapedLast - (reapedFirst ?? reapedLast)) - readOfExited;
    if (tail <= 0) return out;
    const share = readBase > 0 ? (c: { last: number; first: number }) => (c.last - c.first) / readBase : () => 1 / exited.length;
    for (const [key, s] of seen) {
      if (!s.ownChild || !gone(key)) continue;
      out.set(s.group, (out.get(s.group) ?? 0) + tail * share(s));
    }
    return out;
  };
  poll();
  const timer = setInterval(poll, pollMs);
  return {
    read: poll,
    stop(events) {
      clearInterval(timer);
      poll();
      const machineLast = machineTicks();
      const intervalS = (performance.now() - started) / 1000;
      const ticks = clockTicksPerSecond();
      const tail = tails();
      const us_per_event: Required<PerGroup> = { app: null, postgres: null, kafka: null, load: null };
      const cores: Required<PerGroup> = { app: null, postgres: null, kafka: null, load: null };
      for (const group of GROUPS) {
        if (selectors[group] === undefined) continue;
        let used = tail.get(group) ?? 0;
        for (const s of seen.values()) if (s.group === group) used += s.last - s.first;
        const seconds = used / ticks;
        us_per_event[group] = events > 0 ? (seconds * 1e6) / events : null;
        cores[group] = seconds / intervalS;
      }
      const app_engine: EngineFigures = { jit: 0, gc: 0 };
      for (const t of engine.values()) app_engine[t.kind] += events > 0 ? ((t.last - t.first) / ticks / events) * 1e6 : 0;
      const groupCores = GROUPS.reduce((sum, g) => sum + (cores[g] ?? 0), 0);
      const machine = machineFirst === undefined || machineLast === undefined ? undefined : machineFigures(machineFirst, machineLast, ticks, intervalS, groupCores);
      return {
        interval_s: intervalS,
        events,
        us_per_event,
        cores,
        ...(selectors.app !== undefined ? { app_engine } : {}),
        ...(machine === undefined ? {} : { machine }),
      };
    },
  };
}

/** The bench's own children whose command line holds `text` (wrk, the Java producer, the load process). */
export const ownChildren =
  (text: string): Selector =>
  (stats) =>
    stats.filter((s) => s.ppid === process.pid && commandLine(s.pid).includes(text)).map((s) => s.pid);

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
