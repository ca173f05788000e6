import { join } from 'node:path';
import type { Config } from '../config.ts';
import { SluiceError } from '../errors.ts';
import { BrokerDataDirInUse, brokerDataDirHolder, leftBehindBroker, portProblem, startLocalBroker, type LocalBroker } from '../kafka/local-broker.ts';
import type { Logger } from '../log.ts';

/** Where `serve`'s own broker keeps its data, its log and its pid file. */
export function ownBrokerDataDir(config: Config): string {
  return join(config.db.dataDir, 'kafka');
}

/**
 * `serve` without KAFKA_BROKERS starts its own broker and only ever publishes to it: a port already
 * taken is refused at once (the broker itself takes seconds and is waited for in the background),
 * unless what holds it is the broker an earlier sluice on this data directory left behind, which the
 * start stops.
 */
export async function checkOwnBrokerPort(config: Config): Promise<void> {
  // First, before the database opens beside the broker: a data directory in use is the cause to name,
  // not the port or the database lock that follow from it.
  const inUse = ownBrokerDataDirInUse(config);
  if (inUse !== undefined) throw inUse;
  const problem = await portProblem(config.kafka.localPort);
  if (problem !== undefined && leftBehindBroker(ownBrokerDataDir(config)) === undefined) throw localBrokerError(config, problem);
}

/** Why the local broker's data directory cannot be used: another live sluice holds it (serve and check say so alike). */
export function ownBrokerDataDirInUse(config: Config): SluiceError | undefined {
  const dataDir = ownBrokerDataDir(config);
  const holder = brokerDataDirHolder(dataDir);
  return holder === undefined ? undefined : dataDirInUseError(new BrokerDataDirInUse(dataDir, holder));
}

export async function startOwnBroker(config: Config, log: Logger): Promise<LocalBroker> {
  log.info('KAFKA_BROKERS not set: starting a local Kafka broker', { port: config.kafka.localPort });
  const dataDir = ownBrokerDataDir(config);
  try {
    return await startLocalBroker({
      dataDir,
      port: config.kafka.localPort,
      tools: config.kafkaTools,
      fastStart: true,
      onLeftBehindStopped: (pid) => log.warn('stopped a local Kafka broker an earlier sluice left running', { pid, data_dir: dataDir }),
    });
  } catch (err) {
    if (err instanceof BrokerDataDirInUse) throw dataDirInUseError(err);
    const why = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
    // Only a port taken (or somebody else's broker on it) is fixed by another port; anything else is in the broker's log.
    if (err instanceof SluiceError && err.code === 'address_unavailable') throw localBrokerError(config, why);
    throw new SluiceError(
      'kafka_unavailable',
      `SLUICE_KAFKA_LOCAL_PORT ${config.kafka.localPort}: the local Kafka broker did not start: ${why}: see ${join(dataDir, 'broker.log')}, or set KAFKA_BROKERS to use a broker you run`,
    );
  }
}

/** The local broker's port cannot serve, naming SLUICE_KAFKA_LOCAL_PORT and the ways out: never somebody else's broker. */
function localBrokerError(config: Config, why: string): SluiceError {
  return new SluiceError(
    'kafka_unavailable',
    `SLUICE_KAFKA_LOCAL_PORT ${config.kafka.localPort}: the local Kafka broker did not start: ${why}: free the port or set SLUICE_KAFKA_LOCAL_PORT to another one, or set KAFKA_BROKERS to use a broker you run`,
  );
}

/** Another live sluice runs its broker on this data directory: the way out is a directory of this one's own. */
function dataDirInUseError(err: BrokerDataDirInUse): SluiceError {
  return new SluiceError(
    'kafka_unavailable',
    `SLUICE_DATA_DIR: the local Kafka broker's data directory ${err.dataDir} is in use by another sluice, ${err.holderName}: stop that sluice, or give this one another SLUICE_DATA_DIR`,
  );
}
