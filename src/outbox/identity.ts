import { ConfigError, SluiceError } from '../errors.ts';
import type { Sql } from './db.ts';

/** This outbox's identity (migrations/0003_outbox_identity.sql): a UUID made once, with the database. */
export async function readOutboxIdentity(sql: Sql): Promise<string> {
  return (await identityRow(sql)).id;
}

/**
 * The identity, after checking that this process places rows in as many partitions as the outbox was
 * first used with (the first process records its SLUICE_PARTITIONS). Another count is a configuration
 * error: its rows would sit in partitions no processor owns, pending for ever, with nothing reporting it.
 */
export async function claimOutbox(sql: Sql, partitions: number): Promise<string> {
  await sql`UPDATE outbox_identity SET partitions = ${partitions} WHERE partitions IS NULL`;
  const row = await identityRow(sql);
  if (row.partitions !== partitions) {
    const message = partitionsMismatch(partitions, row.partitions);
    throw new ConfigError(message, [{ path: 'SLUICE_PARTITIONS', message }]);
  }
  return row.id;
}

/**
 * The partition count this outbox recorded: undefined when the database has no outbox yet (not
 * migrated), null when no process has used it. Read-only, for probes that must not claim it.
 */
export async function recordedPartitions(sql: Sql): Promise<number | null | undefined> {
  const [table] = await sql<{ exists: boolean }[]>`SELECT to_regclass('outbox_identity') IS NOT NULL AS exists`;
  if (table?.exists !== true) return undefined;
  const [row] = await sql<{ partitions: number | null }[]>`SELECT partitions FROM outbox_identity`;
  return row?.partitions ?? null;
}

/** Why SLUICE_PARTITIONS cannot be used with an outbox that recorded `recorded` (check says it too). */
export function partitionsMismatch(partitions: number, recorded: number | null): string {
  return `SLUICE_PARTITIONS is ${partitions}, but this outbox places its rows in ${recorded ?? '?'} partitions: run every sluice of this outbox (serve, ingest, process, replay) with SLUICE_PARTITIONS=${recorded ?? '?'}`;
}

async function identityRow(sql: Sql): Promise<{ id: string; partitions: number | null }> {
  const [row] = await sql<{ id: string; partitions: number | null }[]>`SELECT id::text AS id, partitions FROM outbox_identity`;
  if (row === undefined) throw new SluiceError('outbox_unavailable', 'the outbox has no identity row (outbox_identity is empty): run `sluice migrate`');
  return row;
}
