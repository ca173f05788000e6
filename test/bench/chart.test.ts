import { describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchChart, chartFile, growthChart, type GrowthFile } from '../../bench/chart.ts';
import type { BenchReport } from '../../bench/result.ts';

const GROWTH = join(import.meta.dir, '..', '..', 'bench', 'results', 'growth-2026-11-27.json');

function report(): BenchReport {
  const cpu = (app: number, postgres: number | null) => ({
    interval_s: 5,
    events: 50_000,
    us_per_event: { app, postgres, kafka: null },
    cores: { app: (app * 50_000) / 5e6, postgres: postgres === null ? null : (postgres * 50_000) / 5e6, kafka: null },
  });
  return {
    date: '2026-11-28',
    command: 'bun run bench --quick',
    quick: true,
    machine: { cores: 2, bun: '1.4.5', platform: 'linux-x64', load_average: { start: 1, end: 2 }, busy_note: '' },
    baselines: [
      { name: 'raw-bun-serve-json', description: '', unit: 'req/s', throughput: 80_000, events: 400_000, p50_ms: 1, p99_ms: 2, max_ms: 3, cpu: cpu(9, null) },
    ],
    scenarios: [
      {
        name: 'ingest-json-fast_ack <&>',
        command: 'ingest',
        database: 'postgres',
        workers: null,
        unit: 'req/s',
        throughput: 8_000,
        events: 40_000,
        p50_ms: 5,
        p99_ms: 20,
        max_ms: 40,
        cpu: cpu(60, 25),
        peak_rss_mib: 300,
        peak_rss_per_process_mib: [300],
        baseline: 'raw-bun-serve-json',
        ratio: 0.1,
        target: '>= 0.5 x ceiling',
        target_met: false,
        rss_target_met: false,
      },
    ],
  };
}

const widths = (svg: string, tooltipStart: string): number[] =>
  [...svg.matchAll(/<rect [^>]*width="([\d.]+)"[^>]*><title>([^<]*)<\/title>/g)].filter((m) => m[2]?.startsWith(tooltipStart)).map((m) => Number(m[1]));

describe('bench charts (SVG, no tools)', () => {
  test('the bench chart draws each scenario against its ceiling, its CPU per process and its RSS', () => {
    const svg = benchChart(report());
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // Names are escaped, never raw markup.
    expect(svg).toContain('ingest-json-fast_ack &lt;&amp;&gt;');
    expect(svg).not.toContain('<&>');
    // Log scale: the ceiling (10× the throughput) is drawn longer, by one decade's width.
    const [sluice] = widths(svg, 'ingest-json-fast_ack &lt;&amp;&gt;: 8k');
    const [ceiling] = widths(svg, 'raw-bun-serve-json: 80k');
    expect(sluice).toBeGreaterThan(0);
    expect(ceiling).toBeGreaterThan(sluice ?? 0);
    expect(svg).toContain('0.10 ×  target MISSED');
    // CPU: one segment per process group that took part (sluice and Postgres here, not Kafka).
    expect(widths(svg, 'ingest-json-fast_ack &lt;&amp;&gt;, sluice')).toHaveLength(1);
    expect(widths(svg, 'ingest-json-fast_ack &lt;&amp;&gt;, Postgres')).toHaveLength(1);
    expect(widths(svg, 'ingest-json-fast_ack &lt;&amp;&gt;, Kafka')).toHaveLength(0);
    // Without the machine's figure (older results) the total alone; with it, the busy cores beside it.
    expect(svg).toContain('>85 µs<');
    const withMachine = report();
    const s = withMachine.scenarios[0];
    if (s?.cpu !== undefined) s.cpu.machine = { busy_cores: 1.934, other_cores: 0.2, softirq_cores: 0.1, steal_cores: 0, iowait_cores: 0 };
    expect(benchChart(withMachine)).toContain('>85 µs, machine 1.93 cores<');
    expect(svg).toContain('300 MiB');
  });

  test('a report without CPU figures (runs before they existed) still draws', () => {
    const old = report();
    for (const r of [...old.baselines, ...old.scenarios]) delete r.cpu;
    const svg = benchChart(old);
    expect(svg).not.toContain('CPU time per event');
    expect(svg).toContain('Peak RSS');
  });

  test('the growth chart draws every measured point of every curve, and says where a cost was not measured', () => {
    const file = JSON.parse(readFileSync(GROWTH, 'utf8')) as GrowthFile;
    // That run predates the published curve: two of its points, as bench/growth/growth.ts writes them.
    file.points.push(
      { curve: 'published', x: 0, start: 'no VACUUM', poll_ms: 0.2, full_poll_ms: 0.3, discovery_ms: 0.25, claim_ms: 0.7 },
      { curve: 'published', x: 1_000_000, start: 'no VACUUM', poll_ms: 0.2, full_poll_ms: 3.85, discovery_ms: 0.35, claim_ms: 0.8 },
      { curve: 'published', x: 1_000_000, start: 'after VACUUM', poll_ms: 0.2, full_poll_ms: 0.19, discovery_ms: 0.2, claim_ms: 0.85, vacuum_ms: 846 },
    );
    const svg = growthChart(file);
    const drawn = ['start_ms', 'rss_mib', 'peak_rss_mib', 'scrape_ms', 'scrape_max_ms', 'backlog_refresh_ms', 'throughput_rps', 'poll_ms', 'full_poll_ms', 'discovery_ms', 'claim_ms'] as const;
    const values = file.points.reduce((n, p) => n + drawn.filter((k) => p[k] !== undefined).length, 0);
    expect(svg.match(/<circle /g)?.length).toBe(values);
    // The unforwarded curve has no scrape and no write rate; only the published curve has processor
    // statements, and it has nothing else.
    expect(svg.match(/not measured on this curve/g)?.length).toBe(3 + 3 + 4);
    expect(svg).toContain('3M: 19.5k (full scan)');
    expect(svg).toContain('1M: 3.9 (no VACUUM, full poll)');
  });

  test('bun bench/chart.ts writes the SVG beside the results file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-chart-'));
    try {
      const json = join(dir, '2026-11-28-quick.json');
      writeFileSync(json, JSON.stringify(report()));
      const proc = Bun.spawn({ cmd: ['bun', join(import.meta.dir, '..', '..', 'bench', 'chart.ts'), json], stdout: 'pipe', stderr: 'pipe' });
      expect(await proc.exited).toBe(0);
      expect(readFileSync(join(dir, '2026-11-28-quick.svg'), 'utf8')).toBe(benchChart(report()));
      expect(await chartFile(json)).toBe(join(dir, '2026-11-28-quick.svg'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
