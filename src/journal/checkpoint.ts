import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SluiceError } from '../errors.ts';

/**
 * How far the forwarder got: in segment `segment` (its first seq), the next byte to read (uncompressed)
 * and that line's number, and the last seq passed.
 */
export interface Checkpoint {
  segment: number;
  offset: number;
  line: number;
  seq: number;
}

const schema = z.object({
  segment: z.number().int().min(0),
  offset: z.number().int().min(0),
  line: z.number().int().min(1),
  seq: z.number().int().min(0),
});

export const CHECKPOINT_FILE = 'checkpoint.json';

export async function readCheckpoint(nodeDir: string): Promise<Checkpoint | undefined> {
  const path = join(nodeDir, CHECKPOINT_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return schema.parse(JSON.parse(text));
  } catch (err) {
    throw new SluiceError('journal_corrupt', `${path} is not a valid checkpoint: ${(err as Error).message}`);
  }
}

/**
 * Replaces the checkpoint atomically: write a temp file, fsync it, rename over the old one. The
 * directory is not fsynced: losing the rename in a crash only means forwarding some lines again, which
 * the outbox's unique constraint absorbs.
 */
export async function writeCheckpoint(nodeDir: string, cp: Checkpoint): Promise<void> {
  const path = join(nodeDir, CHECKPOINT_FILE);
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(cp)}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}
