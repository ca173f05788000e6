import { afterAll, beforeAll, expect, test } from 'bun:test';
import { createLogger } from '../../src/log.ts';
import { migrate } from '../../src/outbox/migrate.ts';
import { openDatabase } from '../../src/outbox/db.ts';
import { testBrokers } from '../support/kafka.ts';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.ts';
import { quietLog } from '../support/postgres.ts';
import { postEvent, startSluice } from '../support/sluice.ts';

let cluster: PgCluster;
beforeAll(async () => {
  cluster = await startPgCluster();
  const db = await openDatabase({ url: cluster.url, dataDir: '', pool: 1 }, quietLog);
  await migrate(db.sql, quietLog);
  await db.close();
});
afterAll(async () => {
  await cluster.destroy();
});

test("sluice's Postgres sessions terminated again and again under load: it stays up and nothing is left unhandled", async () => {
  const unhandled: string[] = [];
  const onRejection = (reason: unknown): void => {
    unhandled.push(String(reason));
  };
  process.on('unhandledRejection', onRejection);
  const errors: string[] = [];
  const log = createLogger({
    level: 'error',
    write: (l) => {
      const line = JSON.parse(l) as { msg: string };
      if (/unhandled|uncaught/.test(line.msg)) errors.push(l);
    },
  });
  const sluice = await startSluice({ DATABASE_URL: cluster.url, KAFKA_BROKERS: (await testBrokers()).join(','), SLUICE_REBALANCE_MS: '100', SLUICE_WRITE_MODE: 'fast_ack' }, { log });
  let stop = false;
  let sent = 0;
  const load = (async () => {
    for (let i = 0; !stop; i++) {
      const body = Array.from({ length: 20 }, (_, j) => ({ tenant_id: `t${(i + j) % 7}`, dedupe_key: `k${i}-${j}`, payload: { i, j } }));
      await postEvent(sluice.url, body).then(
        async (r) => {
          await r.text();
          sent++;
        },
        () => {},
      );
    }
  })();
  try {
    let terminated = 0;
    for (let round = 0; round < 10; round++) {
      await Bun.sleep(500);
      terminated += await cluster.terminate('sluice');
    }
    expect(terminated).toBeGreaterThan(0);
    await Bun.sleep(1_000);
    stop = true;
    await load;
    expect(sent).toBeGreaterThan(0);
    const health = await fetch(`${sluice.url}/healthz`);
    expect(health.status).toBe(200);
  } finally {
    stop = true;
    await load;
    await sluice.stop();
    process.off('unhandledRejection', onRejection);
  }
  expect(unhandled).toEqual([]);
  expect(errors).toEqual([]);
}, 120_000);
