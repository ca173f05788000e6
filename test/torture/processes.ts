import { readFileSync } from 'node:fs';
import { processTree } from '../../bench/proc.ts';
import { spawnSluice, type SpawnedSluice } from '../support/spawn-sluice.ts';

export type Role = 'serve' | 'ingest' | 'process';

/** What happened to a child that the run did not ask for, or a stop that went wrong. */
export interface ProcessIncident {
  name: string;
  what: string;
  /** The child's last log lines, for the report. */
  tail: string[];
}

/**
 * One sluice child (serve, ingest or process) that the run kills and starts again on the same port
 * and journal. An exit the run did not cause is an incident: no dependency failure may end sluice.
 */
export class SluiceProcess {
  readonly name: string;
  readonly role: Role;
  readonly url: string;
  #env: Record<string, string>;
  #child: SpawnedSluice | undefined;
  #expectExit = false;
  #incidents: ProcessIncident[];
  starts = 0;

  constructor(name: string, role: Role, port: number, env: Record<string, string>, incidents: ProcessIncident[]) {
    this.name = name;
    this.role = role;
    this.url = `http://127.0.0.1:${port}`;
    this.#env = { ...env, SLUICE_PORT: String(port) };
    this.#incidents = incidents;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the child, retrying while it exits before listening (a dependency still down), up to `timeoutMs`. */
  async start(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const child = await spawnSluice(this.#env, this.role);
        this.#child = child;
        this.#expectExit = false;
        this.starts++;
        void child.proc.exited.then((code) => {
          if (this.#child !== child) return;
          this.#child = undefined;
          if (this.#expectExit) return;
          this.#incidents.push({ name: this.name, what: `exited on its own with ${code}`, tail: child.logLines().slice(-15) });
          // As a supervisor would: the run goes on, and the incident fails it.
          void this.start().catch(() => {});
        });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${this.name} did not start within ${timeoutMs} ms: ${String(err).slice(0, 2_000)}`);
        await Bun.sleep(500);
      }
    }
  }

  /**
   * kill -9 of the whole node, as a crash of its machine or an OOM kill of its control group: a
   * supervised `serve` (its processor in a process of its own) loses its ingest worker and processor
   * with the supervisor, rather than watching them drain.
   */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#expectExit = true;
    const tree = processTree(child.proc.pid).slice(1).map((s) => s.pid);
    child.proc.kill('SIGKILL');
    for (const pid of tree) signal(pid, 'SIGKILL');
    await child.proc.exited;
    while (tree.some(alive)) await Bun.sleep(20);
    this.#child = undefined;
  }

  /** SIGTERM: must exit 0 within `timeoutMs` (its SLUICE_SHUTDOWN_TIMEOUT_MS plus a margin). Returns the time it took. */
  async terminate(timeoutMs: number): Promise<number> {
    const child = this.#child;
    if (child === undefined) return 0;
    this.#expectExit = true;
    const started = performance.now();
    child.proc.kill('SIGTERM');
    const timer = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
    const code = await child.proc.exited;
    clearTimeout(timer);
    const ms = performance.now() - started;
    this.#child = undefined;
    if (code !== 0 || ms > timeoutMs) {
      this.#incidents.push({ name: this.name, what: `SIGTERM ended with ${code ?? child.proc.signalCode} after ${Math.round(ms)} ms`, tail: child.logLines().slice(-15) });
    }
    return ms;
  }

  logLines(): string[] {
    return this.#child?.logLines() ?? [];
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

/** Running: a zombie (dead, its parent gone and nobody reaping it yet) counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
