import { describe, expect, test } from 'bun:test';
import { startCpuMeter, treeOf } from '../../bench/cpu-meter.ts';
import { clockTicksPerSecond, parseStat, processTree, statusMiB } from '../../bench/proc.ts';

// A child that burns BURN_MS of its own CPU time, says so, then idles until it is killed.
const BURNER = `
const target = Number(process.argv[1]) * 1000;
let x = 0;
while (process.cpuUsage().user + process.cpuUsage().system < target) x += Math.sqrt(x + 1);
console.log('burnt');
setInterval(() => {}, 1000);
`;
const BURN_MS = 400;

describe('bench /proc readers', () => {
  test('parseStat counts fields after the last parenthesis, whatever the command name holds', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[4 - 3] = '77'; // ppid
    fields[14 - 3] = '120'; // utime
    fields[15 - 3] = '30'; // stime
    fields[22 - 3] = '9001'; // starttime
    const s = parseStat(`4242 (a (weird) name) ${fields.join(' ')}`);
    expect(s).toEqual({ pid: 4242, ppid: 77, cpuTicks: 150, startTicks: 9001 });
    expect(() => parseStat('not a stat line')).toThrow();
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
      const reader = child.stdout.getReader();
      let out = '';
      while (!out.includes('burnt')) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
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
    } finally {
      child.kill('SIGKILL');
      await child.exited;
    }
  });
});
