import { describe, expect, test } from 'bun:test';
import { inheritedEnv } from '../../bench/sluice.ts';

describe('the bench starts sluice as a user would', () => {
  test("the developer's settings, database, brokers, engine and allocator options are not passed on; the rest is", () => {
    const env = {
      PATH: '/usr/bin',
      HOME: '/root',
      SLUICE_WRITE_MODE: 'sync',
      SLUICE_MEMORY_MIB: '4096',
      DATABASE_URL: 'postgres://x@h/db',
      KAFKA_BROKERS: 'h:9092',
      BUN_JSC_forceRAMSize: '1073741824',
      BUN_JSC_useConcurrentGC: '0',
      MIMALLOC_PURGE_DELAY: '0',
      BUN_INSTALL: '/opt/bun',
    };
    expect(inheritedEnv(env)).toEqual({ PATH: '/usr/bin', HOME: '/root', BUN_INSTALL: '/opt/bun' });
  });
});
