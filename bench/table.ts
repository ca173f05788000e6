import { WORK_GROUPS, type Group } from './cpu-meter.ts';
import { RSS_LIMIT_MIB, type BaselineResult, type BenchReport, type ScenarioResult, type WarmupArrivals } from './result.ts';

const number = (n: number | null | undefined, digits = 0): string =>
  n !== null && n !== undefined && Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';

const verdict = (met: boolean | null): string => (met === null ? '' : met ? 'met' : 'MISSED');

const GROUP_HEADERS: Record<Group, string> = { app: 'sluice (ceiling: its process)', postgres: 'Postgres', kafka: 'Kafka broker', load: 'load µs/event' };

function cpuTable(rows: (BaselineResult | ScenarioResult)[]): string {
  const measured = rows.filter((r) => r.cpu !== undefined);
  if (measured.length === 0) return '';
  const cell = (r: BaselineResult | ScenarioResult, g: Group): string => {
    const us = r.cpu?.us_per_event[g] ?? null;
    return us === null ? '-' : `${number(us, 1)} (${number(r.cpu?.cores[g], 2)})`;
  };
  const engine = (r: BaselineResult | ScenarioResult): string => {
    const e = r.cpu?.app_engine;
    return e === undefined ? '-' : `${number(e.jit, 1)} / ${number(e.gc, 1)}`;
  };
  const machine = (r: BaselineResult | ScenarioResult): string => {
    const m = r.cpu?.machine;
    return m === undefined ? '-' : `${number(m.busy_cores, 2)} (${number(m.other_cores, 2)})`;
  };
  return [
    `| CPU µs per event (cores busy) | events | interval s | ${WORK_GROUPS.map((g) => GROUP_HEADERS[g]).join(' | ')} | of which its compiler / GC threads | total µs/event | ${GROUP_HEADERS.load} | machine cores busy (other) |`,
    `| --- | ---: | ---: | ${WORK_GROUPS.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: |`,
    ...measured.map((r) => {
      const total = WORK_GROUPS.reduce((sum, g) => sum + (r.cpu?.us_per_event[g] ?? 0), 0);
      return (
        `| ${r.name} | ${number(r.cpu?.events)} | ${number(r.cpu?.interval_s, 1)} | ${WORK_GROUPS.map((g) => cell(r, g)).join(' | ')} | ` +
        `${engine(r)} | ${number(total, 1)} | ${cell(r, 'load')} | ${machine(r)} |`
      );
    }),
    '',
    'Compiler / GC threads: the part of sluice\'s (or the ceiling process\'s) µs spent by its engine\'s compiler threads and its ' +
      'collector\'s helper threads (JavaScriptCore\'s JITWorker and HeapHelper, HotSpot\'s compiler and GC threads); a process ' +
      'started just before its measurement still compiles its code in it.',
    'Total: sluice (or the ceiling\'s own process), Postgres and the broker. Load: the load generator, not in the total — wrk for ' +
      'raw Bun.serve and HTTP scenarios, the fixed-rate load process and the bench\'s Kafka reader for publish latency, the bench ' +
      'itself (sender and Kafka reader) end to end; "-" for the Postgres and Kafka ceilings, whose client is their own process.',
    'Machine: the cores the whole machine kept busy over the same interval (/proc/stat: user, nice, system, irq, softirq, steal), ' +
      'and in brackets what of it no group above was charged with: interrupts and network receive, the kernel\'s own threads (the ' +
      'file system\'s journal, writeback), the bench\'s own meter, any other work on the machine, time taken by a hypervisor. ' +
      'Busy near the core count: the measurement ran out of CPU.',
  ].join('\n');
}

// The floors, stated with the table: each is a figure measured in the same run (bench/budget.ts).
const BUDGET_NOTE = [
  'Budget: CPU µs per event at the rate each rate target asks for (its ratio × the ceiling measured in this run, or its absolute rate), ' +
    'from figures of this run only. The floors, the work no sluice can skip:',
  '- load: the scenario\'s own load generator, measured in it (wrk; the bench\'s sender and Kafka reader end to end);',
  '- HTTP: raw Bun.serve\'s own process per event, receiving the same requests and answering 202 (single JSON or NDJSON-1000 ceiling);',
  '- Postgres insert: the Postgres ceiling\'s Postgres per row (insertRows, batches of 1,000);',
  '- claim + mark (serve: published events): the Postgres ceiling\'s per row once more — the mark writes a new version of the row ' +
    'as the insert wrote it; the claim\'s read is taken as free;',
  '- broker: the Kafka ceiling\'s broker per record (ProducerPerformance, acks=all, no transactions).',
  'Unavoidable cores = rate × the floors. Sluice budget = (cores − unavoidable cores) / rate. Charged = sluice\'s own µs/event ' +
    'minus the HTTP floor (raw Bun.serve\'s part of its work, counted among the floors) plus what Postgres and the broker spent ' +
    'per event beyond their floors; the verdict holds it against the budget. Out of reach here: the durable minimum of the ' +
    'scenario\'s write mode (a ceiling above: raw Bun.serve plus an O_DSYNC group commit and the outbox insert, for serve also ' +
    'the Kafka transaction and the mark; nothing more) did better than sluice and still missed the asked rate by over 5 %, so sluice\'s ' +
    'pipeline, arranged as it is, does not reach it on this machine either. The targets\' met / MISSED above stand as measured.',
].join('\n');

function budgetTable(report: BenchReport): string {
  const rows = report.scenarios.filter((s) => s.budget !== undefined);
  const { cores, load_average } = report.machine;
  // The verdicts count CPU time at the asked rate, as if the cores were the bench's: say when they were not.
  const shared =
    load_average.start >= cores
      ? `\nVerdicts weigh CPU time, not throughput: this run shared its ${cores} cores with other work (load average ` +
        `${number(load_average.start, 1)} at the start), so "within budget" beside a MISSED target means the cores were not the bench's to use.`
      : '';
  if (rows.length === 0) return '';
  const us = (n: number | null | undefined): string => number(n, 1);
  return [
    '| budget at the target rate | events/s asked | from | load | HTTP | Postgres insert | claim + mark | broker | unavoidable cores | ' +
      'sluice budget µs/event | sluice µs/event | charged µs/event | verdict |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows.map((s) => {
      const b = s.budget;
      const f = b?.floor_us;
      return (
        `| ${s.name} | ${number(b?.target_rate)} | ${b?.rate_from ?? ''} | ${us(f?.load)} | ${us(f?.http)} | ${us(f?.postgres_insert)} | ` +
        `${us(f?.postgres_claim_mark)} | ${us(f?.broker)} | ${number(b?.unavoidable_cores, 2)} of ${b?.cores ?? '-'} | ` +
        `${us(b?.sluice_budget_us)} | ${us(b?.sluice_us)} | ${us(b?.charged_us)} | ${b?.verdict ?? ''} |`
      );
    }),
    '',
    BUDGET_NOTE + shared,
  ].join('\n');
}

function scalingTable(report: BenchReport): string {
  const scaling = report.scaling;
  if (scaling === undefined) return '';
  if (scaling.rows.length === 0) return `Scaling (1 vs N ingest workers): ${scaling.note}.`;
  return [
    `| scaling (${scaling.setting ?? ''}) | workers | throughput | sluice cores busy | machine cores busy | speed-up |`,
    '| --- | --- | --- | --- | --- | ---: |',
    ...scaling.rows.map(
      (r) =>
        `| ${r.scenario} | ${r.workers.join(' / ')} | ${r.throughput.map((t) => number(t)).join(' / ')} | ` +
        `${r.sluice_cores.map((c) => number(c, 2)).join(' / ')} | ${(r.machine_cores ?? r.workers.map(() => null)).map((c) => number(c, 2)).join(' / ')} | ` +
        `${number(r.speedup, 2)} |`,
    ),
    '',
    scaling.note,
  ].join('\n');
}

function profileTable(scenarios: ScenarioResult[]): string {
  const profiled = scenarios.filter((s) => s.profile !== undefined);
  if (profiled.length === 0) return '';
  return [
    '| profile (bun --cpu-prof) | samples | by stage (nearest src/ directory) | by innermost frame |',
    '| --- | ---: | --- | --- |',
    ...profiled.map((s) => {
      const top = (shares: { where: string; share: number }[]): string =>
        shares
          .slice(0, 8)
          .map((x) => `${x.where} ${(x.share * 100).toFixed(0)}%`)
          .join(', ');
      return `| ${s.name} | ${number(s.profile?.samples)} | ${top(s.profile?.by_stage ?? [])} | ${top(s.profile?.by_self ?? [])} |`;
    }),
  ].join('\n');
}

/**
 * What a latency run's warm-up second left out: how soon after its start the process published. The
 * first start on a cluster without sluice's progress topic once held its first publications for
 * 1.1 s, past the warm-up, and the run's p99 read 214–550 ms for it.
 */
function warmupLine(w: WarmupArrivals): string {
  if (w.first_ms === null || w.slowest_ms === null) return 'warm-up second (left out): none of its events arrived';
  return `warm-up second (left out): its first event, sent as the process listened, arrived after ${number(w.first_ms)} ms, its slowest after ${number(w.slowest_ms)} ms`;
}

/** The run as Markdown tables: ceilings, the scenarios with their targets, CPU per event, the rate targets' budgets, scaling, profiles. */
export function formatTables(report: BenchReport): string {
  const baselines = [
    '| ceiling (baseline) | unit | throughput | p50 ms | p99 ms | max ms |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
    ...report.baselines.map(
      (b) => `| ${b.name} | ${b.unit} | ${number(b.throughput)} | ${number(b.p50_ms, 2)} | ${number(b.p99_ms, 2)} | ${number(b.max_ms, 1)} |`,
    ),
  ];
  const scenarios = [
    `| scenario | unit | throughput | p50 ms | p99 ms | max ms | peak RSS MiB (<= ${RSS_LIMIT_MIB}) | per process | ceiling | ratio | target | met |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | --- |',
    ...report.scenarios.map(
      (s) =>
        `| ${s.name} | ${s.unit} | ${number(s.throughput)} | ${number(s.p50_ms, 2)} | ${number(s.p99_ms, 2)} | ${number(s.max_ms, 1)} | ` +
        `${number(s.peak_rss_mib)} ${s.rss_target_met ? '' : '(MISSED)'} | ${s.peak_rss_per_process_mib.map((m) => number(m)).join(' + ')} | ` +
        `${s.baseline} | ${number(s.ratio, 2)} | ${s.target ?? ''} | ${verdict(s.target_met)} |`,
    ),
  ];
  const rows = [...report.baselines, ...report.scenarios];
  const notes = [
    ...rows.filter((r) => r.note !== undefined).map((r) => `- ${r.name}: ${r.note}`),
    ...rows.flatMap((r) => (r.warmup === undefined ? [] : [`- ${r.name}: ${warmupLine(r.warmup)}`])),
  ];
  return [baselines.join('\n'), scenarios.join('\n'), cpuTable(rows), budgetTable(report), scalingTable(report), profileTable(report.scenarios), notes.join('\n')]
    .filter((s) => s.length > 0)
    .join('\n\n');
}
