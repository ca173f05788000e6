// `sluice kafka-local`: the local single-node Kafka broker in the foreground until SIGINT/SIGTERM.
// CI can start it in the background and poll --bootstrap-file for the address.
import { rename, rm, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { kafkaTools } from '../config.ts';
import { startLocalBroker, type LocalBrokerOptions } from './local-broker.ts';
import { SluiceError } from '../errors.ts';
import { createLogger } from '../log.ts';

/** `argv` was checked against the command's usage by the CLI. */
export async function runKafkaLocal(argv: string[]): Promise<number> {
  const log = createLogger({ base: { component: 'kafka-local' } });
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, 'data-dir': { type: 'string' }, 'bootstrap-file': { type: 'string' } },
    strict: true,
  });
  // Runs without a Config (no sluice settings apply): the tools' variables are read here, at its edge.
  const options: LocalBrokerOptions = {
    tools: kafkaTools(process.env),
    onLeftBehindStopped: (pid) => log.warn('stopped a local Kafka broker an earlier sluice left running', { pid, data_dir: values['data-dir'] }),
  };
  if (values.port !== undefined) options.port = Number(values.port);
  if (values['data-dir'] !== undefined) options.dataDir = values['data-dir'];
  const bootstrapFile = values['bootstrap-file'];

  // Listen before starting so a signal during the few seconds of startup still stops the JVM cleanly.
  let onSignal: (signal: NodeJS.Signals) => void = () => {};
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = resolve;
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const starting = startLocalBroker(options);
  try {
    const first = await Promise.race([starting, stopRequested]);
    if (typeof first === 'string') {
      log.info('kafka stopping', { signal: first });
      await (await starting).stop();
      return 0;
    }
    const broker = first;
    if (bootstrapFile !== undefined) {
      // Write-then-rename so a poller never reads a half-written address.
      await writeFile(`${bootstrapFile}.tmp`, `${broker.bootstrap}\n`);
      await rename(`${bootstrapFile}.tmp`, bootstrapFile);
    }
    log.info('kafka ready', { bootstrap: broker.bootstrap, data_dir: broker.dataDir });
    // The broker is what this command is for: its JVM ending on its own is a failure (exit 1), not an end.
    const end = await Promise.race([stopRequested, broker.exited.then((code) => ({ code }))]);
    if (typeof end === 'string') log.info('kafka stopping', { signal: end });
    await broker.stop();
    if (bootstrapFile !== undefined) await rm(bootstrapFile, { force: true });
    if (typeof end !== 'string') {
      log.error('kafka failed', {
        error: new SluiceError('kafka_unavailable', `the local Kafka broker on ${broker.bootstrap} exited on its own (code ${end.code})`),
        data_dir: broker.dataDir,
      });
      return 1;
    }
    log.info('kafka stopped');
    return 0;
  } catch (error) {
    log.error('kafka failed', { error });
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

