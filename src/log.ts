/** Structured logs: one JSON object per line on stderr, with a level. Never pass tokens in fields. */
import type { LogLevel } from './core/modes.ts';

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export function createLogger(
  opts: { level?: LogLevel; base?: Fields; write?: (line: string) => void } = {},
): Logger {
  const min = order[opts.level ?? 'info'];
  const base = opts.base ?? {};
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: LogLevel, msg: string, fields?: Fields): void => {
    if (order[level] < min) return;
    const entry = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
    write(`${JSON.stringify(entry, replacer)}\n`);
  };
  return {
    debug: (msg, f) => emit('debug', msg, f),
    info: (msg, f) => emit('info', msg, f),
    warn: (msg, f) => emit('warn', msg, f),
    error: (msg, f) => emit('error', msg, f),
    child: (fields) => createLogger({ ...opts, base: { ...base, ...fields } }),
  };
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

/**
 * One line per kind of failure and interval instead of one per occurrence: the first of a kind is
 * logged at once, later ones within `everyMs` only counted, and the count goes out with the next line
 * of that kind (`suppressed`). For failures that repeat per request, such as a full journal disk.
 */
export class ThrottledLog {
  #log: Logger;
  #everyMs: number;
  #now: () => number;
  #kinds = new Map<string, { last: number; suppressed: number }>();

  constructor(log: Logger, everyMs: number, now: () => number = Date.now) {
    this.#log = log;
    this.#everyMs = everyMs;
    this.#now = now;
  }

  warn(kind: string, msg: string, fields: Fields): void {
    const now = this.#now();
    const seen = this.#kinds.get(kind);
    if (seen !== undefined && now - seen.last < this.#everyMs) {
      seen.suppressed++;
      return;
    }
    this.#log.warn(msg, seen === undefined || seen.suppressed === 0 ? fields : { ...fields, suppressed: seen.suppressed });
    this.#kinds.set(kind, { last: now, suppressed: 0 });
  }
}
