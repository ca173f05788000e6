import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../errors.ts';
import type { ComponentState } from '../core/component-state.ts';

const PROBE = 'ready.probe';
const PROBE_BYTES = Buffer.alloc(4096, 0x0a);

/**
 * The journal's readiness, from the disk rather than from the last write alone: a disk with less
 * room than one largest request is not ready, even before a write fails there (after a restart, say);
 * and after a failed write, ready again only once a probe write and fsync in the journal succeed, so
 * a freed disk is seen without waiting for a client's write that a not-ready instance would not get.
 */
export async function journalReadiness(nodeDir: string, failure: string | undefined, minFreeBytes: number): Promise<ComponentState> {
  try {
    const fs = await statfs(nodeDir);
    const free = fs.bavail * fs.bsize;
    if (free < minFreeBytes) return { ok: false, detail: `journal disk full: ${free} bytes free, a request may need ${minFreeBytes}` };
    if (failure === undefined) return { ok: true };
    const path = join(nodeDir, PROBE);
    const handle = await open(path, 'w');
    try {
      await handle.write(PROBE_BYTES);
      await handle.datasync();
    } finally {
      await handle.close();
      await unlink(path).catch(() => {});
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, detail: failure ?? describeError(err) };
  }
}
