import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { postgresSelector, startCpuMeter } from '../../bench/cpu-meter.ts';
import { allStats } from '../../bench/proc.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';

let ours: TestDatabase;
let other: TestDatabase;

beforeAll(async () => {
  ours = await createTestDatabase({ migrate: false });
  other = await createTestDatabase({ migrate: false });
});

afterAll(async () => {
  await ours.drop();
  await other.drop();
});

const nameOf = (db: TestDatabase): string => new URL(db.url).pathname.slice(1);

describe('bench CPU meter on the real Postgres', () => {
  test("picks the bench database's backends, never another database's, and charges their CPU", async () => {
    const select = await postgresSelector(ours.sql, nameOf(ours));
    if (select === undefined) throw new Error('Postgres runs where /proc does not show it: this test needs the local server');
    const backend = async (db: TestDatabase): Promise<number> => (await db.sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]?.pid ?? -1;
    const mine = await backend(ours);
    const theirs = await backend(other);
    const picked = select(allStats());
    expect(picked).toContain(mine);
    expect(picked).not.toContain(theirs);

    const meter = startCpuMeter({ postgres: select });
    // Work the backend does itself: a few hundred ms of CPU on any machine.
    await ours.sql`SELECT count(*) FROM generate_series(1, 5000000) AS g WHERE g % 7 = 3`;
    const figures = meter.stop(1);
    expect(figures.us_per_event.postgres).toBeGreaterThan(50_000);
    expect(figures.us_per_event.app).toBeNull();
  });
});
