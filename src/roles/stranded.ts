import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import { systemClock } from '../core/clock.ts';
import { SluiceError } from '../errors.ts';
import { startIngestStack } from '../ingest/ingest-stack.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Outbox } from '../outbox/outbox.ts';

/** The node ids a node's ingest runs: its own with one worker, `<id>-1` … `<id>-<n>` with several. */
export function workerNodeIds(nodeId: string, workers: number): string[] {
  return workers === 1 ? [nodeId] : Array.from({ length: workers }, (_, i) => `${nodeId}-${i + 1}`);
}

/**
 * Journal directories of this node that its worker count no longer runs: `<id>` after a move to
 * several workers; `<id>-<k>` for k above the count after a move to fewer, as far as the count
 * recorded by the last start with several workers (`<id>.workers` in the journal directory) reaches.
 * No other node's directory is one, even one whose id looks like `<id>-<k>`: one worker never
 * looks past its own directory unless the record says several ran before.
 */
export function strandedNodeIds(config: Config): string[] {
  const before = recordedWorkers(config);
  const running = new Set(workerNodeIds(config.nodeId, config.workers));
  const ours = [config.nodeId, ...(before > 1 ? workerNodeIds(config.nodeId, before) : [])];
  return ours.filter((id) => !running.has(id) && existsSync(join(config.journal.dir, id)));
}

/** Where the worker count of the last start with several workers is kept: beside the node directories. */
function recordPath(config: Config): string {
  return join(config.journal.dir, `${config.nodeId}.workers`);
}

function recordedWorkers(config: Config): number {
  try {
    const n = Number(readFileSync(recordPath(config), 'utf8').trim());
    return Number.isInteger(n) && n > 1 ? n : 1;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 1;
    throw err;
  }
}

/** Once every stranded directory is forwarded: the count now running (or none, for one worker, as before workers existed). */
function recordWorkers(config: Config): void {
  const path = recordPath(config);
  if (config.workers === 1) {
    rmSync(path, { force: true });
    return;
  }
  mkdirSync(config.journal.dir, { recursive: true });
  writeFileSync(`${path}.tmp`, `${config.workers}\n`);
  renameSync(`${path}.tmp`, path);
}

/** A stranded journal whose forwarder makes no progress for this long stops the start: the outbox does not take its records. */
const STUCK_MS = 30_000;
const STUCK_CHECK_MS = 1_000;

/**
 * Forwards what journals of a worker count no longer run still hold (a restart with fewer
 * workers, or from several to one), before the workers start: an acknowledged write in a directory
 * nobody runs any more would otherwise never reach the outbox. The directory's own forwarder does it,
 * from its checkpoint (rows already in the outbox are skipped, as after any restart). The directory is
 * left as it is, for `sluice replay` and for whoever deletes it. Returns the records forwarded.
 */
export async function forwardStranded(o: { config: Config; outbox: Outbox; metrics: Metrics; log: Logger }): Promise<number> {
  let total = 0;
  for (const nodeId of strandedNodeIds(o.config)) {
    // Its lines name the journal: the node's own node_id alone would pass them for the running node's.
    // Nothing new is written there: no spare segment to zero.
    const config = { ...o.config, nodeId, journal: { ...o.config.journal, preallocate: false } };
    const stack = await startIngestStack({ config, outbox: o.outbox, log: o.log.child({ journal_node: nodeId }), metrics: o.metrics });
    const backlog = stack.progress.unforwarded;
    try {
      while (stack.progress.unforwarded > 0) {
        if (stack.forwarder.failingMs() > STUCK_MS) {
          throw new SluiceError(
            'journal_unavailable',
            `SLUICE_WORKERS ${o.config.workers}: journal ${nodeId} (a worker this count no longer runs) holds ${stack.progress.unforwarded} unforwarded records the outbox did not take: ${stack.forwarder.lastError ?? 'unknown error'}`,
          );
        }
        // Woken by each checkpoint the forwarder commits; at the latest after STUCK_CHECK_MS, to look again whether it is stuck.
        const waited = new AbortController();
        await Promise.race([stack.progress.forwarded.next(stack.progress.forwarded.value, waited.signal), systemClock.sleep(STUCK_CHECK_MS, waited.signal)]);
        waited.abort();
      }
    } finally {
      await stack.close();
    }
    if (backlog > 0) o.log.info('journal of a worker no longer run forwarded', { journal_node: nodeId, records: backlog, workers: o.config.workers });
    total += backlog;
  }
  recordWorkers(o.config);
  return total;
}
