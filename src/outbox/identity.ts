import { SluiceError } from '../errors.ts';
import type { Sql } from './db.ts';

/** This outbox's identity (migrations/0003_outbox_identity.sql): a UUID made once, with the database. */
export async function readOutboxIdentity(sql: Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`SELECT id::text AS id FROM outbox_identity`;
  if (row === undefined) throw new SluiceError('outbox_unavailable', 'the outbox has no identity row (outbox_identity is empty): run `sluice migrate`');
  return row.id;
}
