// The run's charts as self-contained SVG: `benchChart` for bench/results/<date>.json (throughput next to
// its ceiling, CPU per event by process, peak RSS), `growthChart` for growth-<date>.json (issue 15's
// curves). Also usable alone: `bun bench/chart.ts bench/results/<file>.json` writes <file>.svg beside it.
import { WORK_GROUPS, type WorkGroup } from './cpu-meter.ts';
import type { GrowthPoint } from './growth/growth.ts';
import { RSS_LIMIT_MIB, type BaselineResult, type BenchReport, type ScenarioResult } from './result.ts';
import { circle, compact, line, linearScale, logScale, polyline, rect, svgDocument, text, type Scale } from './svg.ts';

const WIDTH = 1100;
const LABEL_W = 250;
const PLOT_X = LABEL_W + 10;
const PLOT_W = WIDTH - PLOT_X - 170;
const SLUICE = '#2b6cb0';
const CEILING = '#a0aec0';
const GROUP_COLOURS: Record<WorkGroup, string> = { app: '#2b6cb0', postgres: '#dd6b20', kafka: '#38a169' };
const GROUP_NAMES: Record<WorkGroup, string> = { app: 'sluice (or the ceiling\'s own process)', postgres: 'Postgres', kafka: 'Kafka broker' };

function axis(scale: Scale, top: number, bottom: number, format: (v: number) => string): string[] {
  return scale.ticks.flatMap((t) => [line(scale.at(t), top, scale.at(t), bottom, '#e2e8f0'), text(scale.at(t), bottom + 14, format(t), { anchor: 'middle', size: 11, fill: '#4a5568' })]);
}

function legend(x: number, y: number, items: [string, string][]): string[] {
  let at = x;
  return items.flatMap(([colour, label]) => {
    const out = [rect(at, y - 9, 12, 12, colour), text(at + 17, y + 1, label, { size: 11 })];
    at += 30 + label.length * 6.2;
    return out;
  });
}

function throughputPanel(report: BenchReport, top: number): { body: string[]; height: number } {
  const ceilings = new Map(report.baselines.map((b) => [b.name, b]));
  const rows = report.scenarios;
  const values = rows.flatMap((s) => [s.throughput, ceilings.get(s.baseline)?.throughput ?? 0]).filter((v) => v > 0);
  const scale = logScale(Math.min(...values), Math.max(...values), PLOT_X, PLOT_X + PLOT_W);
  const rowH = 30;
  const plotTop = top + 40;
  const bottom = plotTop + rows.length * rowH;
  const body = [
    text(20, top + 16, 'Throughput per scenario next to its ceiling, same run (per second, log scale)', { size: 15, weight: 'bold' }),
    ...legend(PLOT_X, top + 32, [
      [SLUICE, 'sluice'],
      [CEILING, 'its ceiling'],
    ]),
    ...axis(scale, plotTop, bottom, compact),
  ];
  rows.forEach((s, i) => {
    const y = plotTop + i * rowH + 4;
    const ceiling = ceilings.get(s.baseline);
    const met = s.target_met === null ? '' : s.target_met ? '  target met' : '  target MISSED';
    body.push(
      text(LABEL_W, y + 14, `${s.name} (${s.unit})`, { anchor: 'end' }),
      rect(PLOT_X, y, scale.at(s.throughput) - PLOT_X, 11, SLUICE, `${s.name}: ${compact(s.throughput)} ${s.unit}`),
      rect(PLOT_X, y + 12, scale.at(ceiling?.throughput ?? 0) - PLOT_X, 9, CEILING, `${s.baseline}: ${compact(ceiling?.throughput ?? 0)} ${ceiling?.unit ?? ''}`),
      text(PLOT_X + PLOT_W + 8, y + 14, `${compact(s.throughput)}, ${s.ratio.toFixed(2)} ×${met}`, { size: 11, fill: s.target_met === false ? '#c53030' : '#1a202c' }),
    );
  });
  return { body, height: bottom - top + 30 };
}

function cpuPanel(rows: (BaselineResult | ScenarioResult)[], top: number): { body: string[]; height: number } | undefined {
  const measured = rows.filter((r) => r.cpu !== undefined);
  if (measured.length === 0) return undefined;
  const total = (r: BaselineResult | ScenarioResult): number => WORK_GROUPS.reduce((sum, g) => sum + (r.cpu?.us_per_event[g] ?? 0), 0);
  const scale = linearScale(Math.max(...measured.map(total)), PLOT_X, PLOT_X + PLOT_W);
  const rowH = 22;
  const plotTop = top + 40;
  const bottom = plotTop + measured.length * rowH;
  const body = [
    text(20, top + 16, 'CPU time per event over the measured interval, by process (µs; ceilings first; right: the machine\'s busy cores)', { size: 15, weight: 'bold' }),
    ...legend(PLOT_X, top + 32, WORK_GROUPS.map((g) => [GROUP_COLOURS[g], GROUP_NAMES[g]])),
    ...axis(scale, plotTop, bottom, compact),
  ];
  measured.forEach((r, i) => {
    const y = plotTop + i * rowH + 4;
    let x = PLOT_X;
    body.push(text(LABEL_W, y + 11, r.name, { anchor: 'end', fill: 'baseline' in r ? '#1a202c' : '#4a5568' }));
    for (const g of WORK_GROUPS) {
      const us = r.cpu?.us_per_event[g];
      if (us === null || us === undefined) continue;
      const w = scale.at(us) - PLOT_X;
      body.push(rect(x, y, w, 14, GROUP_COLOURS[g], `${r.name}, ${GROUP_NAMES[g]}: ${us.toFixed(1)} µs per event, ${r.cpu?.cores[g]?.toFixed(2) ?? '-'} cores`));
      x += w;
    }
    // The whole machine's busy cores beside the total: near the core count, the measurement ran out of CPU.
    const busy = r.cpu?.machine?.busy_cores;
    body.push(text(PLOT_X + PLOT_W + 8, y + 11, `${compact(total(r))} µs${busy === undefined ? '' : `, machine ${busy.toFixed(2)} cores`}`, { size: 11 }));
  });
  return { body, height: bottom - top + 30 };
}

function rssPanel(report: BenchReport, top: number): { body: string[]; height: number } {
  const rows = report.scenarios;
  const scale = linearScale(Math.max(RSS_LIMIT_MIB, ...rows.map((s) => s.peak_rss_mib)), PLOT_X, PLOT_X + PLOT_W);
  const rowH = 22;
  const plotTop = top + 30;
  const bottom = plotTop + rows.length * rowH;
  const body = [
    text(20, top + 16, `Peak RSS of the largest sluice process (MiB; dashed: the ${RSS_LIMIT_MIB} MiB target)`, { size: 15, weight: 'bold' }),
    ...axis(scale, plotTop, bottom, compact),
    line(scale.at(RSS_LIMIT_MIB), plotTop - 4, scale.at(RSS_LIMIT_MIB), bottom, '#c53030', true),
  ];
  rows.forEach((s, i) => {
    const y = plotTop + i * rowH + 4;
    const colour = s.rss_target_met ? SLUICE : '#c53030';
    body.push(
      text(LABEL_W, y + 11, s.name, { anchor: 'end' }),
      rect(PLOT_X, y, scale.at(s.peak_rss_mib) - PLOT_X, 14, colour, `${s.name}: ${s.peak_rss_mib.toFixed(0)} MiB`),
      text(PLOT_X + PLOT_W + 8, y + 11, `${s.peak_rss_mib.toFixed(0)} MiB`, { size: 11 }),
    );
  });
  return { body, height: bottom - top + 30 };
}

export function benchChart(report: BenchReport): string {
  const title = `sluice bench ${report.date}${report.quick ? ' (quick)' : ''}: ${report.machine.cores} cores, Bun ${report.machine.bun}`;
  const body = [text(20, 28, title, { size: 17, weight: 'bold' })];
  let top = 44;
  const panels = [
    (t: number) => throughputPanel(report, t),
    (t: number) => cpuPanel([...report.baselines, ...report.scenarios], t),
    (t: number) => rssPanel(report, t),
  ];
  for (const panel of panels) {
    const p = panel(top);
    if (p === undefined) continue;
    body.push(...p.body);
    top += p.height + 10;
  }
  return svgDocument(WIDTH, top, title, body);
}

export interface GrowthFile {
  date: string;
  quick: boolean;
  cores: number;
  bun: string;
  points: GrowthPoint[];
}

type Metric = keyof Pick<
  GrowthPoint,
  'start_ms' | 'rss_mib' | 'peak_rss_mib' | 'scrape_ms' | 'scrape_max_ms' | 'backlog_refresh_ms' | 'throughput_rps' | 'poll_ms' | 'full_poll_ms' | 'discovery_ms' | 'claim_ms'
>;

const CURVES: { curve: GrowthPoint['curve']; title: string[]; log: boolean }[] = [
  { curve: 'unforwarded', title: ['unforwarded', 'journal records'], log: false },
  { curve: 'outbox_rows', title: ['outbox rows'], log: false },
  { curve: 'tenants', title: ['tenants', '(log scale)'], log: true },
  { curve: 'published', title: ['rows published', 'since VACUUM'], log: false },
];

const COLUMNS: { title: string; metrics: { metric: Metric; label: string; dashed: boolean }[] }[] = [
  { title: 'ready after start (ms)', metrics: [{ metric: 'start_ms', label: '', dashed: false }] },
  {
    title: 'RSS (MiB)',
    metrics: [
      { metric: 'rss_mib', label: 'RSS', dashed: false },
      { metric: 'peak_rss_mib', label: 'peak', dashed: true },
    ],
  },
  {
    title: 'scrape / backlog refresh (ms)',
    metrics: [
      { metric: 'scrape_ms', label: 'scrape median', dashed: false },
      { metric: 'scrape_max_ms', label: 'scrape max', dashed: true },
      { metric: 'backlog_refresh_ms', label: 'backlog refresh', dashed: false },
    ],
  },
  { title: 'writes/s (sync)', metrics: [{ metric: 'throughput_rps', label: '', dashed: false }] },
  {
    title: 'processor statements (ms)',
    metrics: [
      { metric: 'poll_ms', label: 'poll', dashed: false },
      { metric: 'full_poll_ms', label: 'full poll', dashed: false },
      { metric: 'discovery_ms', label: 'discovery', dashed: true },
      { metric: 'claim_ms', label: 'claim', dashed: true },
    ],
  },
];

const SERIES_COLOURS = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5'];

interface Series {
  label: string;
  colour: string;
  dashed: boolean;
  points: [number, number][];
}

function growthCell(points: GrowthPoint[], column: (typeof COLUMNS)[number], log: boolean, x0: number, y0: number, w: number, h: number): string[] {
  const starts = [...new Set(points.map((p) => p.start ?? ''))];
  const series: Series[] = [];
  for (const [si, start] of starts.entries()) {
    for (const [mi, m] of column.metrics.entries()) {
      const pts = points.filter((p) => (p.start ?? '') === start && p[m.metric] !== undefined).map((p): [number, number] => [p.x, p[m.metric] ?? 0]);
      if (pts.length === 0) continue;
      const label = [start, m.label].filter((s) => s !== '').join(', ');
      series.push({ label, colour: SERIES_COLOURS[(starts.length > 1 ? si : mi) % SERIES_COLOURS.length] ?? '#000', dashed: m.dashed, points: pts });
    }
  }
  const frame = [rect(x0, y0, w, h, '#f7fafc')];
  if (series.length === 0) return [...frame, text(x0 + w / 2, y0 + h / 2, 'not measured on this curve', { anchor: 'middle', size: 11, fill: '#a0aec0' })];
  const left = x0 + 44;
  const right = x0 + w - 12;
  const top = y0 + 8;
  const bottom = y0 + h - 58;
  const xs = [...new Set(series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
  const xAt = log ? logScale(Math.min(...xs), Math.max(...xs), left, right).at : linearScale(Math.max(...xs), left, right).at;
  const y = linearScale(Math.max(...series.flatMap((s) => s.points.map(([, v]) => v))), bottom, top);
  const body = [...frame];
  for (const t of y.ticks) body.push(line(left, y.at(t), right, y.at(t), '#e2e8f0'), text(left - 4, y.at(t) + 4, compact(t), { anchor: 'end', size: 10, fill: '#4a5568' }));
  // A label too close to the one before it (0 and 100k on a 3M axis) is left out; its point still has its tooltip.
  let lastLabel = Number.NEGATIVE_INFINITY;
  for (const x of xs) {
    if (xAt(x) - lastLabel < 26) continue;
    lastLabel = xAt(x);
    body.push(text(xAt(x), bottom + 13, compact(x), { anchor: 'middle', size: 10, fill: '#4a5568' }));
  }
  series.forEach((s, i) => {
    body.push(polyline(s.points.map(([x, v]) => [xAt(x), y.at(v)]), s.colour, s.dashed));
    for (const [x, v] of s.points) body.push(circle(xAt(x), y.at(v), s.colour, `${compact(x)}: ${compact(v)}${s.label === '' ? '' : ` (${s.label})`}`));
    if (s.label !== '') {
      const ly = bottom + 28 + Math.floor(i / 2) * 13;
      const lx = x0 + 8 + (i % 2) * (w / 2);
      body.push(line(lx, ly - 4, lx + 16, ly - 4, s.colour, s.dashed), text(lx + 20, ly, s.label, { size: 10 }));
    }
  });
  return body;
}

export function growthChart(file: GrowthFile): string {
  const title = `sluice growth curves ${file.date}${file.quick ? ' (quick)' : ''}: ${file.cores} cores, Bun ${file.bun}`;
  const cellW = 250;
  const cellH = 200;
  const labelW = 110;
  const top = 70;
  const body = [text(20, 28, title, { size: 17, weight: 'bold' }), text(20, 48, 'Each row one curve (x: its size), each column one cost; hover a point for its value.', { size: 12, fill: '#4a5568' })];
  COLUMNS.forEach((c, ci) => body.push(text(labelW + ci * (cellW + 10) + cellW / 2, top - 6, c.title, { anchor: 'middle', weight: 'bold' })));
  CURVES.forEach((curve, ri) => {
    const y0 = top + ri * (cellH + 10);
    curve.title.forEach((t, i) => body.push(text(labelW - 8, y0 + cellH / 2 + i * 14, t, { anchor: 'end', weight: i === 0 ? 'bold' : undefined, size: 11 })));
    const points = file.points.filter((p) => p.curve === curve.curve);
    COLUMNS.forEach((c, ci) => body.push(...growthCell(points, c, curve.log, labelW + ci * (cellW + 10), y0, cellW, cellH)));
  });
  const width = labelW + COLUMNS.length * (cellW + 10) + 10;
  return svgDocument(width, top + CURVES.length * (cellH + 10) + 10, title, body);
}

/** A results file of either kind, drawn as the SVG beside it. */
export async function chartFile(jsonPath: string): Promise<string> {
  const data = (await Bun.file(jsonPath).json()) as BenchReport | GrowthFile;
  const svg = 'points' in data ? growthChart(data) : benchChart(data);
  const svgPath = jsonPath.replace(/\.json$/, '.svg');
  await Bun.write(svgPath, svg);
  return svgPath;
}

if (import.meta.main) {
  const [json] = process.argv.slice(2);
  if (json === undefined) throw new Error('usage: bun bench/chart.ts <results json>');
  console.log(`wrote ${await chartFile(json)}`);
}
