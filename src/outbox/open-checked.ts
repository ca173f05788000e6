import type { Config } from '../config.ts';
import { SluiceError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { probeDatabase } from '../probes.ts';
import { openDatabase, type Database } from './db.ts';

const PROBE_TIMEOUT_MS = 5_000;

/**
 * Opens the outbox database; a real server is probed first, so a bad DATABASE_URL fails within
 * seconds with a SluiceError saying which setting and why, never a hang or a bare ECONNREFUSED.
 */
export async function openChecked(config: Config, log: Logger): Promise<Database> {
  if (config.db.url !== undefined) {
    const probe = await probeDatabase(config.db.url, PROBE_TIMEOUT_MS);
    if (!probe.ok) throw new SluiceError('outbox_unavailable', probe.detail);
  }
  return openDatabase(config.db, log);
}
