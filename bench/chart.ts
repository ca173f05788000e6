// Renders a run's JSON as a PNG bar chart (each scenario's throughput next to its ceiling) with gnuplot.
// Also usable alone: `bun bench/chart.ts bench/results/<date>.json`.
import { childOutput } from './child.ts';
import type { BenchReport } from './result.ts';

export async function renderChart(report: BenchReport, pngPath: string): Promise<void> {
  if (Bun.which('gnuplot') === null) {
    throw new Error('gnuplot is not installed: run `sudo apt-get install -y gnuplot-nox` for the chart');
  }
  const ceilings = new Map(report.baselines.map((b) => [b.name, b.throughput]));
  const rows = report.scenarios.map((s) => `"${s.name}\\n(${s.unit})" ${s.throughput.toFixed(0)} ${(ceilings.get(s.baseline) ?? 0).toFixed(0)}`);
  const script = `
set terminal pngcairo size 1400,720 font "sans,10"
set output "${pngPath}"
set title "sluice throughput per scenario next to its ceiling (same run, ${report.machine.cores} cores, ${report.date})"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set format y "%.0s%c"
set ylabel "per second (log scale)"
set grid ytics
set key top left
set xtics rotate by -25 noenhanced
$data << EOD
${rows.join('\n')}
EOD
plot $data using 2:xtic(1) title "sluice" lc rgb "#2b6cb0", '' using 3 title "ceiling (baseline)" lc rgb "#a0aec0"
`;
  const path = `${pngPath}.gp.tmp`;
  await Bun.write(path, script);
  try {
    await childOutput(['gnuplot', path]);
  } finally {
    await Bun.file(path).delete();
  }
}

if (import.meta.main) {
  const [json] = process.argv.slice(2);
  if (json === undefined) throw new Error('usage: bun bench/chart.ts <results json>');
  const report = (await Bun.file(json).json()) as BenchReport;
  await renderChart(report, json.replace(/\.json$/, '.png'));
}
