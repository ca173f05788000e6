// `bun run bench --profile`: sluice runs under `bun --cpu-prof`, and each scenario's samples are split
// by stage (the src/ directory of the nearest project frame on the stack) and by where the CPU itself
// went (the innermost frame's directory or package). README.md, "Benchmarks", "Profile by stage".
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dir, '..');

/** The parts of a V8/JSC `.cpuprofile` this reads. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  samples: number[];
}

export interface Share {
  where: string;
  /** Share of the sampled time, 0–1. */
  share: number;
}

export interface StageProfile {
  /**
   * Samples taken: Bun's profiler samples the JavaScript thread only while it runs (no idle samples),
   * so each sample stands for one slice of running time, whatever the gap before it. Weighting by
   * the gap (its time delta) charged each wait to the frame that ran first after it — the socket
   * write or read that ended it — which overstated those up to ~2× (README.md, "Profile by stage").
   */
  samples: number;
  /**
   * Each sample charged to the nearest src/ directory on its stack (library and runtime frames under it
   * included); one with no src/ frame to the nearest package (a library's I/O callbacks), else to its
   * innermost frame (the garbage collector, a builtin).
   */
  by_stage: Share[];
  /** Each sample charged to its innermost frame: a src/ directory, a package, or the runtime. */
  by_self: Share[];
}

/** `src/http`, `src` (its top-level files), `node_modules/<package>`, or undefined for the runtime's own frames. */
export function locationOf(url: string): string | undefined {
  if (url === '' || !url.includes('/')) return undefined;
  const path = relative(ROOT, url.replace(/^file:\/\//, ''));
  const packageAt = path.lastIndexOf('node_modules/');
  if (packageAt !== -1) {
    const parts = path.slice(packageAt + 'node_modules/'.length).split('/');
    return `node_modules/${parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  if (!path.startsWith('src/')) return path.startsWith('..') ? 'runtime' : path;
  const parts = path.split('/');
  return parts.length > 2 ? `src/${parts[1]}` : 'src';
}

/** A frame without a source file: the engine's markers as they are, `wasm` (PGlite's Postgres), a builtin by name, or the runtime's unnamed native code. */
function runtimeFrame(functionName: string): string {
  if (functionName.startsWith('(')) return functionName;
  if (functionName.startsWith('.wasm-function')) return 'wasm';
  return functionName === '' ? 'runtime (unnamed native frames)' : `builtin ${functionName}`;
}

function shares(counts: Map<string, number>, total: number): Share[] {
  return [...counts.entries()].map(([where, n]) => ({ where, share: total > 0 ? n / total : 0 })).sort((a, b) => b.share - a.share);
}

/** Splits one profile's samples by stage and by innermost frame, each sample counted once. */
export function splitProfile(profile: CpuProfile): StageProfile {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // The nearest frame up the stack that `accept`s its location, memoised per node and predicate.
  const nearest = (accept: (where: string) => boolean): ((id: number) => string | undefined) => {
    const memo = new Map<number, string | undefined>();
    const find = (id: number): string | undefined => {
      if (memo.has(id)) return memo.get(id);
      const here = locationOf(byId.get(id)?.callFrame.url ?? '');
      const up = parent.get(id);
      const found = here !== undefined && accept(here) ? here : up === undefined ? undefined : find(up);
      memo.set(id, found);
      return found;
    };
    return find;
  };
  const nearestSrc = nearest((where) => where.startsWith('src'));
  const nearestPackage = nearest((where) => where.startsWith('node_modules/'));
  const byStage = new Map<string, number>();
  const bySelf = new Map<string, number>();
  let total = 0;
  for (const id of profile.samples) {
    const node = byId.get(id);
    total++;
    const self = node === undefined ? 'unknown' : (locationOf(node.callFrame.url) ?? runtimeFrame(node.callFrame.functionName));
    const s = nearestSrc(id) ?? nearestPackage(id) ?? self;
    byStage.set(s, (byStage.get(s) ?? 0) + 1);
    bySelf.set(self, (bySelf.get(self) ?? 0) + 1);
  }
  return { samples: total, by_stage: shares(byStage, total), by_self: shares(bySelf, total) };
}

/** Every profile a sluice run left in `dir` (one per process), merged. */
export function readProfiles(dir: string): StageProfile | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return undefined;
  const parts = files.map((f) => splitProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile));
  const total = parts.reduce((sum, p) => sum + p.samples, 0);
  const merge = (pick: (p: StageProfile) => Share[]): Share[] => {
    const counts = new Map<string, number>();
    for (const p of parts) for (const s of pick(p)) counts.set(s.where, (counts.get(s.where) ?? 0) + s.share * p.samples);
    return shares(counts, total);
  };
  return { samples: total, by_stage: merge((p) => p.by_stage), by_self: merge((p) => p.by_self) };
}
