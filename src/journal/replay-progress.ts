import type { ReplayProgress } from './replay.ts';

export interface ProgressFigures {
  /** Of the selected files' bytes as stored, 0..100. */
  percent: number;
  linesPerSecond: number;
  /** Seconds left at the rate so far; undefined until there is a rate to go by. */
  etaSeconds: number | undefined;
}

/** Rate and time left, from the bytes read so far (gzipped files count at their stored size). */
export function progressFigures(p: ReplayProgress): ProgressFigures {
  const seconds = p.elapsedMs / 1000;
  const percent = p.bytes === 0 ? 100 : Math.min(100, (100 * p.bytesDone) / p.bytes);
  const bytesPerSecond = seconds > 0 ? p.bytesDone / seconds : 0;
  return {
    percent,
    linesPerSecond: seconds > 0 ? p.lines / seconds : 0,
    etaSeconds: bytesPerSecond > 0 ? Math.max(0, (p.bytes - p.bytesDone) / bytesPerSecond) : undefined,
  };
}

/** One progress line for a terminal (redrawn in place). */
export function progressLine(p: ReplayProgress): string {
  const f = progressFigures(p);
  const eta = f.etaSeconds === undefined ? '' : `, ~${formatSeconds(f.etaSeconds)} left`;
  return `replay: ${f.percent.toFixed(1)}% (file ${p.filesDone}/${p.files}), ${p.lines} lines, ${p.inserted} inserted, ${p.duplicates} duplicates, ${Math.round(f.linesPerSecond)} lines/s${eta}`;
}

/** The same as fields of a JSON log line, for when stderr is not a terminal. */
export function progressFields(p: ReplayProgress): Record<string, number | string | undefined> {
  const f = progressFigures(p);
  return {
    percent: Math.round(f.percent * 10) / 10,
    files_done: p.filesDone,
    files: p.files,
    lines: p.lines,
    inserted: p.inserted,
    duplicates: p.duplicates,
    lines_per_s: Math.round(f.linesPerSecond),
    eta_s: f.etaSeconds === undefined ? undefined : Math.round(f.etaSeconds),
    file: p.file,
  };
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
