import { startLocalBroker } from './src/kafka/local-broker.ts';
const dir = process.argv[2]!;
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  let first = -1; let started = -1;
  const b = await startLocalBroker({ dataDir: dir, port: 19494, log: (l) => { const ms = Math.round(performance.now() - t); if (first < 0) first = ms; if (l.includes('Kafka Server started')) started = ms; } });
  console.log(process.env.VARIANT, 'run', i, 'first log', first, 'server started', started, 'ready', Math.round(performance.now() - t));
  await b.stop();
}
