import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';

/**
 * What can be wrong with a journal that no torn write explains: acknowledged records that are in no
 * file. Each kind is an incident for a person, never something to skip quietly.
 * - `gap`: a seq is followed by one that is not the next (records in between are in no file);
 * - `missing_segment`: the checkpoint names a segment that is gone while records after it were kept;
 * - `checkpoint_ahead`: the checkpoint passed seqs that the files no longer hold (data lost under a
 *   fsync, say): new seqs start above it, so none is ever reused;
 * - `compression_mismatch`: a gzipped copy did not hold what its plain segment held (the plain file
 *   is kept).
 */
export const INCIDENT_KINDS = ['gap', 'missing_segment', 'checkpoint_ahead', 'compression_mismatch'] as const;
export type IncidentKind = (typeof INCIDENT_KINDS)[number];

export interface Incident {
  kind: IncidentKind;
  file: string;
  message: string;
  line?: number;
  /** The last seq seen before the hole, and the first after it, where they are known. */
  after?: number;
  seq?: number;
}

/**
 * The one place journal incidents go: counted (`sluice_journal_integrity_incidents_total{kind}`), logged
 * as errors with file and seqs, and kept for readiness, which reports the node not ready from the first
 * incident until a restart (by then a person has looked: see the README's runbook).
 */
export class JournalIntegrity {
  #log: Logger;
  #metrics: Metrics;
  #count = 0;
  #last: Incident | undefined;
  /** Holes already reported (start-up and the forwarder can both meet the same one). */
  #holes = new Set<string>();

  constructor(log: Logger, metrics: Metrics) {
    this.#log = log;
    this.#metrics = metrics;
  }

  report(incident: Incident): void {
    if (incident.after !== undefined && incident.seq !== undefined) {
      const hole = `${incident.after}..${incident.seq}`;
      if (this.#holes.has(hole)) return;
      this.#holes.add(hole);
    }
    this.#count++;
    this.#last = incident;
    this.#metrics.journalIncidents.inc({ kind: incident.kind });
    this.#log.error('journal integrity incident', { ...incident });
  }

  get incidents(): number {
    return this.#count;
  }

  /** One line for /readyz: how many incidents, and the last one. */
  describe(): string | undefined {
    if (this.#last === undefined) return undefined;
    const l = this.#last;
    return `${this.#count} journal integrity incident(s); last: ${l.kind} in ${l.file}${l.line !== undefined ? `:${l.line}` : ''}: ${l.message}`;
  }
}
