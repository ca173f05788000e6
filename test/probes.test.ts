import { describe, expect, test } from 'bun:test';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { probeWritableDir } from '../src/probes.ts';
import { mountSmallDisk } from './support/small-disk.ts';

describe('probeWritableDir', () => {
  test('regression (outside test, tenth round): on a full disk it says so and leaves no probe file behind', () => {
    const disk = mountSmallDisk(1 << 20);
    try {
      const dir = join(disk.dir, 'journal', 'n1');
      mkdirSync(dir, { recursive: true });
      expect(probeWritableDir('SLUICE_JOURNAL_DIR', dir)).toEqual({ ok: true, detail: `${dir} is writable` });
      disk.fill(0);
      const full = probeWritableDir('SLUICE_JOURNAL_DIR', dir);
      expect(full.ok).toBe(false);
      expect(full.detail).toContain('no space left on the device');
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      disk.unmount();
    }
  });
});
