import { RSS_LIMIT_MIB, type BenchReport } from './result.ts';

const number = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';

const verdict = (met: boolean | null): string => (met === null ? '' : met ? 'met' : 'MISSED');

/** The run as Markdown tables: ceilings first, then the scenarios with their targets. */
export function formatTables(report: BenchReport): string {
  const baselines = [
    '| ceiling (baseline) | unit | throughput | p50 ms | p99 ms | max ms |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
    ...report.baselines.map(
      (b) => `| ${b.name} | ${b.unit} | ${number(b.throughput)} | ${number(b.p50_ms, 2)} | ${number(b.p99_ms, 2)} | ${number(b.max_ms, 1)} |`,
    ),
  ];
  const scenarios = [
    `| scenario | unit | throughput | p50 ms | p99 ms | max ms | peak RSS MiB (<= ${RSS_LIMIT_MIB}) | ceiling | ratio | target | met |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |',
    ...report.scenarios.map(
      (s) =>
        `| ${s.name} | ${s.unit} | ${number(s.throughput)} | ${number(s.p50_ms, 2)} | ${number(s.p99_ms, 2)} | ${number(s.max_ms, 1)} | ` +
        `${number(s.peak_rss_mib)} ${s.rss_target_met ? '' : '(MISSED)'} | ${s.baseline} | ${number(s.ratio, 2)} | ${s.target ?? ''} | ${verdict(s.target_met)} |`,
    ),
  ];
  const notes = [...report.baselines, ...report.scenarios].filter((r) => r.note !== undefined).map((r) => `- ${r.name}: ${r.note}`);
  return [baselines.join('\n'), scenarios.join('\n'), notes.join('\n')].filter((s) => s.length > 0).join('\n\n');
}
