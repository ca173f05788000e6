// `bun run test`: fetches the Kafka jars first (a cold Maven download should not eat a test's
// timeout), then runs the whole suite against the real Postgres and a real local broker.
import { kafkaTools } from '../src/config.ts';
import { ensureKafkaJars } from '../src/kafka/local-broker.ts';

const started = Date.now();
const libs = await ensureKafkaJars(kafkaTools(process.env).cacheDir);
console.error(JSON.stringify({ level: 'info', msg: 'kafka jars ready', libs, ms: Date.now() - started }));
const proc = Bun.spawn({
  cmd: ['bun', 'test', '--timeout', '60000', ...process.argv.slice(2)],
  stdio: ['inherit', 'inherit', 'inherit'],
});
process.exit(await proc.exited);
