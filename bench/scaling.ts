import type { Scaling, ScenarioResult } from './result.ts';

/**
 * 1 against N ingest workers, from the scaling scenarios of one run (bench/scenarios.ts: named
 * `<base>-workers-<n>`, with `workers` set). `setting` undefined: sluice has no worker setting yet.
 */
export function scalingOf(results: ScenarioResult[], setting: string | undefined, cores: number, most: number): Scaling {
  if (setting === undefined) {
    return {
      setting: null,
      rows: [],
      note: 'not measured: sluice has no ingest worker setting yet; naming it as WORKERS_SETTING in bench/scenarios.ts adds the scenarios',
    };
  }
  const bases = new Map<string, ScenarioResult[]>();
  for (const r of results) {
    if (r.workers === null) continue;
    const base = r.name.replace(/-workers-\d+$/, '');
    bases.set(base, [...(bases.get(base) ?? []), r]);
  }
  const rows = [...bases.entries()].map(([scenario, rs]) => {
    const sorted = rs.toSorted((a, b) => (a.workers ?? 0) - (b.workers ?? 0));
    const one = sorted.find((r) => r.workers === 1)?.throughput ?? Number.NaN;
    return {
      scenario,
      workers: sorted.map((r) => r.workers ?? 0),
      throughput: sorted.map((r) => r.throughput),
      sluice_cores: sorted.map((r) => r.cpu?.cores.app ?? null),
      machine_cores: sorted.map((r) => r.cpu?.machine?.busy_cores ?? null),
      speedup: (sorted.at(-1)?.throughput ?? Number.NaN) / one,
    };
  });
  return {
    setting,
    rows,
    note:
      `${cores} cores, shared with wrk (2 threads): a speed-up below ${most} here says as much about the cores left ` +
      'as about sluice; the sluice and machine cores columns tell which (the machine near its core count: out of CPU), and ' +
      'throughput per sluice core is the figure for more cores',
  };
}
