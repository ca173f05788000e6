import { describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineThread, machineFigures, ownChildren, startCpuMeter, treeOf } from '../../bench/cpu-meter.ts';
import { clockTicksPerSecond, dirtyMiB, flushDirtyPages, machineTicks, parseMachineStat, parseStat, processTree, statusMiB } from '../../bench/proc.ts';

// A child that burns BURN_MS of its own CPU time, says so, then idles until it is killed.
const BURNER = `
const target = Number(process.argv[1]) * 1000;
let x = 0;
while (process.cpuUsage().user + process.cpuUsage().system < target) x += Math.sqrt(x + 1);
console.log('burnt');
setInterval(() => {}, 1000);
`;
const BURN_MS = 400;

/** Until the burner says it has burnt its share. */
async function burnt(stdout: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stdout.getReader();
  let out = '';
  while (!out.includes('burnt')) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
}

// A child that idles for argv[2] ms, then burns argv[1] ms of CPU, prints its own CPU time in ms and exits.
const LAST_BURST = `
await Bun.sleep(Number(process.argv[2]));
const cpu = () => (process.cpuUsage().user + process.cpuUsage().system) / 1000;
const target = cpu() + Number(process.argv[1]);
let x = 0;
while (cpu() < target) x += Math.sqrt(x + 1);
console.log(cpu());
`;
const TAIL_MS = 300;

// A child that makes its engine compile: a few hundred distinct functions, each run hot enough for the
// optimising compilers; then prints its own CPU time in ms and idles until it is killed.
const COMPILER = `
let s = 0;
for (let f = 0; f < 200; f++) {
  const fn = new Function('x', 'let a = x; for (let i = 0; i < 50; i++) { a = (a * ' + (f + 3) + ' + i) % 1000003; if (a % ' + (f + 7) + ' === 0) a += ' + f + '; } return a;');
  for (let i = 0; i < 20000; i++) s += fn(i);
}
console.log((process.cpuUsage().user + process.cpuUsage().system) / 1000, s > 0);
setInterval(() => {}, 1000);
`;

describe('bench /proc readers', () => {
  test('parseStat counts fields after the last parenthesis, whatever the command name holds', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[4 - 3] = '77'; // ppid
    fields[14 - 3] = '120'; // utime
    fields[15 - 3] = '30'; // stime
    fields[16 - 3] = '40'; // cutime
    fields[17 - 3] = '2'; // cstime
    fields[22 - 3] = '9001'; // starttime
    const s = parseStat(`4242 (a (weird) name) ${fields.join(' ')}`);
    expect(s).toEqual({ pid: 4242, name: 'a (weird) name', ppid: 77, cpuTicks: 150, reapedTicks: 42, startTicks: 9001 });
    expect(() => parseStat('not a stat line')).toThrow();
  });

  test('parseMachineStat sums every busy state of the aggregate cpu line, steal and interrupts included, and leaves idle and iowait out', () => {
    // user nice system idle iowait irq softirq steal guest guest_nice, then the per-core lines.
    const text = 'cpu  1000 20 300 5000 40 5 60 7 100 0\ncpu0 500 10 150 2500 20 2 30 3 50 0\nintr 123 4 5\n';
    expect(parseMachineStat(text)).toEqual({ busy: 1000 + 20 + 300 + 5 + 60 + 7, idle: 5000, iowait: 40, softirq: 60, steal: 7 });
    // An older kernel's line without steal and guest: too few fields to tell busy from idle.
    expect(() => parseMachineStat('cpu  1 2 3 4 5 6 7\n')).toThrow();
    expect(() => parseMachineStat('cpu0 1 2 3 4 5 6 7 8\n')).toThrow();
    expect(machineTicks()?.busy).toBeGreaterThan(0);
  });

  test('machineFigures turns two reads into cores over the interval, and what no group was charged with', () => {
    const first = { busy: 1000, idle: 5000, iowait: 40, softirq: 60, steal: 7 };
    const last = { busy: 1380, idle: 5020, iowait: 50, softirq: 80, steal: 7 };
    // 380 ticks at 100 a second over 2 s: 1.9 cores, of which the groups kept 1.5 busy.
    const m = machineFigures(first, last, 100, 2, 1.5);
    expect(m.busy_cores).toBeCloseTo(1.9, 10);
    expect(m.other_cores).toBeCloseTo(0.4, 10);
    expect(m.softirq_cores).toBeCloseTo(0.1, 10);
    expect(m.steal_cores).toBe(0);
    expect(m.iowait_cores).toBeCloseTo(0.05, 10);
  });

  test('processTree finds a child and its own children; statusMiB reads their memory', async () => {
    const sh = Bun.spawn({ cmd: ['sh', '-c', 'sleep 30 & sleep 30 & wait'], stdout: 'ignore' });
    try {
      await Bun.sleep(300);
      const tree = processTree(sh.pid);
      expect(tree[0]?.pid).toBe(sh.pid);
      expect(tree.filter((s) => s.ppid === sh.pid)).toHaveLength(2);
      expect(statusMiB(sh.pid, 'VmHWM')).toBeGreaterThan(0);
    } finally {
      for (const s of processTree(sh.pid).reverse()) process.kill(s.pid, 'SIGKILL');
      await sh.exited;
    }
  });

  test('the CPU meter charges a process its CPU time over the interval, per event', async () => {
    const child = Bun.spawn({ cmd: ['bun', '-e', BURNER, String(BURN_MS)], stdout: 'pipe' });
    try {
      const meter = startCpuMeter({ app: treeOf(child.pid) });
      await burnt(child.stdout);
      const figures = meter.stop(1000);
      const cpuS = ((figures.us_per_event.app ?? 0) * 1000) / 1e6;
      // At least what it burnt after the meter's first read (Bun's own start-up may fall before it), and
      // not far above: a tick is 1/CLK_TCK s, and start-up costs a few hundred ms at most.
      expect(cpuS).toBeGreaterThan(BURN_MS / 1000 - 0.15);
      expect(cpuS).toBeLessThan(BURN_MS / 1000 + 1.5);
      expect(figures.events).toBe(1000);
      expect(figures.cores.app).toBeCloseTo(cpuS / figures.interval_s, 5);
      expect(figures.us_per_event.postgres).toBeNull();
      expect(figures.us_per_event.kafka).toBeNull();
      expect(clockTicksPerSecond()).toBeGreaterThan(0);
      // The machine was at least as busy as the burner kept it, and "other" is the rest of the machine.
      const machine = figures.machine;
      expect(machine).toBeDefined();
      expect(machine?.busy_cores ?? 0).toBeGreaterThanOrEqual((figures.cores.app ?? 0) - 0.1);
      expect(machine?.other_cores).toBeCloseTo((machine?.busy_cores ?? 0) - (figures.cores.app ?? 0), 5);
    } finally {
      child.kill('SIGKILL');
      await child.exited;
    }
  });

  test('a process once selected is followed to its end, though the selector lets go of it (an exiting process has no command line)', async () => {
    const child = Bun.spawn({ cmd: ['bun', '-e', BURNER, String(BURN_MS)], stdout: 'pipe' });
    try {
      let calls = 0;
      const meter = startCpuMeter({ app: () => (calls++ === 0 ? [child.pid] : []) });
      await burnt(child.stdout);
      const figures = meter.stop(1000);
      expect(calls).toBeGreaterThan(1);
      expect(((figures.us_per_event.app ?? 0) * 1000) / 1e6).toBeGreaterThan(BURN_MS / 1000 - 0.15);
    } finally {
      child.kill('SIGKILL');
      await child.exited;
    }
  });

  test('engine threads are told by name: the compilers and the collector\'s helpers of JavaScriptCore and of the JVM', () => {
    expect(['JITWorker', 'C2 CompilerThre', 'C1 CompilerThre'].map(engineThread)).toEqual(['jit', 'jit', 'jit']);
    expect(['HeapHelper', 'GC Thread#0', 'G1 Conc#0', 'G1 Refine#0'].map(engineThread)).toEqual(['gc', 'gc', 'gc', 'gc']);
    expect(['bun', 'Bun Pool 0', 'HTTP Client', 'mi-scavenger', 'java', 'kafka-producer-network-thread'].map(engineThread)).toEqual(Array(6).fill(undefined));
  });

  test('the CPU meter splits out the app\'s compiler threads: part of its CPU time, not more', async () => {
    // From a file: code given to `bun -e` ran without compiler threads at all (Bun 1.4.5).
    const dir = mkdtempSync(join(tmpdir(), 'sluice-jit-'));
    writeFileSync(join(dir, 'compiler.ts'), COMPILER);
    const child = Bun.spawn({ cmd: ['bun', join(dir, 'compiler.ts')], stdout: 'pipe' });
    try {
      const meter = startCpuMeter({ app: treeOf(child.pid) });
      const reader = child.stdout.getReader();
      let out = '';
      while (!out.includes('true')) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      const figures = meter.stop(1000);
      const appUs = figures.us_per_event.app ?? 0;
      const jitUs = figures.app_engine?.jit ?? 0;
      // Compiling 200 functions through the optimising tiers costs JavaScriptCore's compiler threads
      // hundreds of ms (measured: ~0.5 s of 3 s); the threads' time is part of the process's.
      expect(jitUs).toBeGreaterThan(50_000 / 1000);
      expect(jitUs + (figures.app_engine?.gc ?? 0)).toBeLessThanOrEqual(appUs);
    } finally {
      child.kill('SIGKILL');
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test('flushDirtyPages leaves no measurement the writes of the one before: what a process wrote without fsync is on disk after it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-dirty-'));
    try {
      // 64 MiB written and not synced, as the broker writes its logs: dirty pages until the kernel's
      // writeback, 30 s later (far below the background ratio on this machine's memory).
      writeFileSync(join(dir, 'log'), Buffer.alloc(64 * 1024 * 1024, 1));
      const before = dirtyMiB();
      expect(before).toBeGreaterThan(48);
      await flushDirtyPages();
      expect(dirtyMiB()).toBeLessThan(before - 48);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a child of the bench that exits in the interval is charged what it spent after its last read too (wrk, the load process)', async () => {
    const meter = startCpuMeter({ load: ownChildren('last-burst-child') });
    // The name in the command line is what the selector looks for (bun -e ignores the extra argument).
    // Seen by the meter's reads (every 500 ms) while idle; the burst and the exit fall mostly between
    // reads: before the meter read the bench's reaped-children time, what came after the last read was lost.
    const child = Bun.spawn({ cmd: ['bun', '-e', LAST_BURST, String(TAIL_MS), '1200', 'last-burst-child'], stdout: 'pipe' });
    const total = Number((await new Response(child.stdout).text()).trim());
    await child.exited;
    const figures = meter.stop(1000);
    const chargedMs = ((figures.us_per_event.load ?? 0) * 1000) / 1000;
    expect(total).toBeGreaterThan(TAIL_MS);
    // Its whole life (it started after the meter), to a clock tick or two and the few ms of its exit.
    const tickMs = 1000 / clockTicksPerSecond();
    expect(chargedMs).toBeGreaterThan(total - 2 * tickMs);
    expect(chargedMs).toBeLessThan(total + 100);
  }, 30_000);

  test('a child read only before it ran still gets the CPU it spent after that read (CI: charged 0 ms of its life)', async () => {
    const meter = startCpuMeter({ load: ownChildren('last-burst-child') }, 3_600_000);
    // The shell stops itself before it has spent a clock tick: the meter's only read while it lives sees
    // it at 0 ticks, as a loaded machine's first read can; everything it then spends is the tail.
    const child = Bun.spawn({
      cmd: ['sh', '-c', 'kill -STOP $$; exec bun -e "$1" "$2" "$3" "$4"', 'last-burst-child', LAST_BURST, String(TAIL_MS), '0', 'last-burst-child'],
      stdout: 'pipe',
    });
    while (!/^\S+ \(.*\) T /.test(await Bun.file(`/proc/${child.pid}/stat`).text())) await Bun.sleep(5);
    meter.read();
    child.kill('SIGCONT');
    const total = Number((await new Response(child.stdout).text()).trim());
    await child.exited;
    const chargedMs = meter.stop(1000).us_per_event.load ?? 0;
    expect(total).toBeGreaterThan(TAIL_MS);
    const tickMs = 1000 / clockTicksPerSecond();
    expect(chargedMs).toBeGreaterThan(total - 2 * tickMs);
    expect(chargedMs).toBeLessThan(total + 100);
  }, 30_000);
});
