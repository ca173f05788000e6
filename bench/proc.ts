// Reading other processes from Linux's /proc: CPU time, memory high-water marks, parents and titles.
// What the bench reports per process (README.md, "Benchmarks", "CPU per event").
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** The command name (a thread's name when read from /proc/<pid>/task/<tid>/stat). */
  name: string;
  ppid: number;
  /** User + system CPU time so far, in clock ticks. */
  cpuTicks: number;
  /**
   * User + system CPU time of its children that exited and were waited for (cutime + cstime), in clock
   * ticks: the whole life of each, including what it spent after anyone last read its own stat.
   */
  reapedTicks: number;
  /** When the process started, in clock ticks after boot: tells a reused pid from the one seen before. */
  startTicks: number;
}

/**
 * Parses one /proc/<pid>/stat line. The command name (field 2) sits in parentheses and may itself hold
 * spaces and parentheses, so fields are counted from the last `)`.
 */
export function parseStat(line: string): ProcStat {
  const close = line.lastIndexOf(')');
  const open = line.indexOf('(');
  const pid = Number.parseInt(line, 10);
  // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ... starttime(22); index 0 is field 3.
  const rest = line.slice(close + 2).split(' ');
  const field = (n: number): number => Number(rest[n - 3]);
  if (close === -1 || !Number.isFinite(pid) || rest.length < 20) throw new Error(`not a /proc stat line: ${line.slice(0, 80)}`);
  return { pid, name: line.slice(open + 1, close), ppid: field(4), cpuTicks: field(14) + field(15), reapedTicks: field(16) + field(17), startTicks: field(22) };
}

/** Undefined once the process is gone (or was never there). */
export function readStat(pid: number): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Every process visible now. */
export function allStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const s = readStat(Number(name));
    if (s !== undefined) stats.push(s);
  }
  return stats;
}

/** The threads of a process now (`pid` is then the thread's id); empty once it is gone. */
export function threadStats(pid: number): ProcStat[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const stats: ProcStat[] = [];
  for (const tid of tids) {
    try {
      stats.push(parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return stats;
}

/** `root` and every process below it, from one snapshot of /proc. */
export function processTree(root: number, stats: ProcStat[] = allStats()): ProcStat[] {
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const self = stats.find((s) => s.pid === root);
  if (self === undefined) return [];
  const tree = [self];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]?.pid ?? -1) ?? []));
  return tree;
}

/** The command line as `ps` shows it; Postgres puts its process title there. Empty once the process is gone. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}

/** A `kB` field of /proc/<pid>/status in MiB: `VmHWM` is the peak resident set size, `VmRSS` the current one. */
export function statusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
  if (match?.[1] === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

/**
 * The whole machine's CPU time so far, in clock ticks summed over its cores, from the first (`cpu`)
 * line of /proc/stat: `busy` is every state but idle and iowait (user, nice, system, irq, softirq,
 * steal), so it holds what no process is charged with: interrupts, the kernel's own threads (the
 * file system's journal, network receive), processes nobody selected, and time a hypervisor took.
 */
export interface MachineTicks {
  busy: number;
  idle: number;
  iowait: number;
  softirq: number;
  steal: number;
}

/** Parses /proc/stat's text (its aggregate `cpu` line; guest time is already inside user and nice). */
export function parseMachineStat(text: string): MachineTicks {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  const f = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  if (line === undefined || f.length < 8 || f.some((n) => !Number.isFinite(n))) throw new Error(`no aggregate cpu line in /proc/stat: ${text.slice(0, 80)}`);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return { busy: user + nice + system + irq + softirq + steal, idle, iowait, softirq, steal };
}

/** The machine's CPU ticks now; undefined without a /proc/stat (not Linux). */
export function machineTicks(): MachineTicks | undefined {
  try {
    return parseMachineStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks a second (USER_HZ, 100 on every Linux seen), from `getconf CLK_TCK`. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    const out = Bun.spawnSync({ cmd: ['getconf', 'CLK_TCK'], stdout: 'pipe', stderr: 'ignore' });
    const n = Number(out.stdout.toString().trim());
    ticksPerSecond = out.exitCode === 0 && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

/** Whether this machine has a /proc to read at all (Linux). */
export function procReadable(): boolean {
  return readStat(process.pid) !== undefined;
}

/** The machine's dirty page cache in MiB (`Dirty:` of /proc/meminfo): written data the kernel has not yet put on disk. */
export function dirtyMiB(): number {
  const match = /^Dirty:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match?.[1] === undefined ? 0 : Number(match[1]) / 1024;
}

/**
 * Writes out every dirty page of the machine (`sync`) and waits for it. Kafka's broker never fsyncs
 * its logs, so what a measurement wrote stays in the page cache until the kernel writes it back
 * (30 s later by default): during the next measurement, whose own fsyncs then wait behind it.
 */
export async function flushDirtyPages(): Promise<void> {
  await Bun.spawn({ cmd: ['sync'], stdout: 'ignore', stderr: 'ignore' }).exited;
}
