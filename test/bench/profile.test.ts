import { describe, expect, test } from 'bun:test';
import { resolve } from 'node:path';
import { locationOf, splitProfile } from '../../bench/profile.ts';

const ROOT = resolve(import.meta.dir, '..', '..');
const file = (path: string): string => `file://${ROOT}/${path}`;

describe('bench profile split by stage', () => {
  test('locationOf names a src/ directory, a package or the runtime', () => {
    expect(locationOf(file('src/http/app.ts'))).toBe('src/http');
    expect(locationOf(file('src/cli.ts'))).toBe('src');
    expect(locationOf(file('node_modules/zod/v4/core/parse.js'))).toBe('node_modules/zod');
    expect(locationOf(file('node_modules/@platformatic/kafka/dist/index.js'))).toBe('node_modules/@platformatic/kafka');
    expect(locationOf('')).toBeUndefined();
    expect(locationOf('[native code]')).toBeUndefined();
  });

  test('a sample is charged to its nearest src/ frame by stage and to its innermost frame by self, once a sample whatever the wait before it', () => {
    const frame = (id: number, url: string, children: number[] = [], functionName = 'f') => ({ id, callFrame: { functionName, url }, children });
    const profile = {
      nodes: [
        frame(1, '', [2, 5, 6], '(root)'),
        frame(2, file('src/http/app.ts'), [3]),
        frame(3, file('node_modules/zod/v4/core/parse.js'), [4]),
        frame(4, '', [], 'JSON.parse'),
        frame(5, file('node_modules/postgres/src/connection.js'), [8]),
        frame(8, '', [], 'writeBuffered'),
        frame(6, '', [], '(garbage collector)'),
      ],
      // One sample in zod under src/http, one in JSON.parse under it, three in a builtin called by
      // postgres.js's socket callback (no src/ frame), one of GC.
      samples: [3, 4, 8, 8, 8, 6],
      // Bun's gaps: the JavaScript thread waited 40 ms before the socket write that ended the wait.
      timeDeltas: [1000, 1000, 40_000, 1000, 1000, 1000],
    };
    const split = splitProfile(profile);
    expect(split.samples).toBe(6);
    expect(split.by_stage).toEqual([
      { where: 'node_modules/postgres', share: 1 / 2 },
      { where: 'src/http', share: 1 / 3 },
      { where: '(garbage collector)', share: 1 / 6 },
    ]);
    expect(split.by_self).toEqual([
      { where: 'builtin writeBuffered', share: 1 / 2 },
      { where: 'node_modules/zod', share: 1 / 6 },
      { where: 'builtin JSON.parse', share: 1 / 6 },
      { where: '(garbage collector)', share: 1 / 6 },
    ]);
  });
});
