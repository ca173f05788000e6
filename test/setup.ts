import { afterAll } from 'bun:test';
import postgres from 'postgres';
import { ADMIN_URL } from './support/postgres.ts';
import { stopSharedBroker } from './support/kafka.ts';

// Fail fast, and say why, when the real Postgres the tests need is not there.
const probe = postgres(ADMIN_URL, { max: 1, connect_timeout: 5, onnotice: () => {} });
try {
  await probe`SELECT 1`;
} catch (err) {
  console.error(
    `\nsluice tests need a real Postgres at ${ADMIN_URL} (set SLUICE_TEST_DATABASE_URL to use another): ${(err as Error).message}\n`,
  );
  process.exit(1);
} finally {
  await probe.end();
}

// A broker's stop waits for its JVM (SIGKILL after 20 s): on a loaded machine that is past a
// hook's default 5 s, which would fail a run whose tests all passed.
afterAll(async () => {
  await stopSharedBroker();
}, 30_000);
