import { appendFileSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A tmpfs of its own (root only): a disk that can really be filled and freed. */
export interface SmallDisk {
  readonly dir: string;
  /** Writes a filler file leaving about `leaveBytes` free. */
  fill(leaveBytes: number): void;
  /** Takes what was freed since (deleted files) back into the filler, leaving about `leaveBytes` free. */
  topUp(leaveBytes: number): void;
  free(): void;
  freeBytes(): number;
  unmount(): void;
}

/** Fills with `write`; writers that took the room meanwhile leave the disk full, as wanted. */
function whileWritersTakeRoom(write: () => void): void {
  try {
    write();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
}

export function mountSmallDisk(bytes: number): SmallDisk {
  if (process.getuid?.() !== 0) throw new Error('a small disk is a tmpfs mount: run the tests as root (CI does)');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-disk-'));
  const mount = Bun.spawnSync({ cmd: ['mount', '-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], stderr: 'pipe' });
  if (mount.exitCode !== 0) throw new Error(`mount tmpfs failed: ${mount.stderr.toString()}`);
  const filler = join(dir, 'filler');
  const disk: SmallDisk = {
    dir,
    freeBytes() {
      const fs = statfsSync(dir);
      return fs.bavail * fs.bsize;
    },
    fill(leaveBytes) {
      disk.free();
      // CI, fresh seed 1015150838: the journal's writers took room between the measure and the write.
      whileWritersTakeRoom(() => writeFileSync(filler, Buffer.alloc(Math.max(0, disk.freeBytes() - leaveBytes))));
    },
    topUp(leaveBytes) {
      const more = disk.freeBytes() - leaveBytes;
      if (more <= 0) return;
      whileWritersTakeRoom(() => appendFileSync(filler, Buffer.alloc(more)));
    },
    free() {
      rmSync(filler, { force: true });
    },
    unmount() {
      Bun.spawnSync({ cmd: ['umount', '-l', dir] });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return disk;
}
