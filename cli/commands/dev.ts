/**
 * `castellan dev [-f FILE] [--no-restart]`: the whole system on one machine.
 */
import { join } from 'node:path';
import { isatty } from 'node:tty';
import { existsSync } from 'node:fs';
import { loadDevConfig, processNames } from '../../local/dev/config.ts';
import { runDev } from '../../local/dev/run.ts';
import { banner } from '../../local/dev/banner.ts';
import { useReadableLogs } from '../../local/dev/logs.ts';
import { FdWriter } from '../../local/dev/output.ts';
import { logger } from '../../common/logger.ts';
import { runUntilSignal } from '../signals.ts';
import { parseFlags, UsageError } from '../usage.ts';

export const help = `Usage: castellan dev [-f FILE] [--port PORT] [--no-restart] [--state-dir DIR]

Runs Castellan on this machine: an embedded NATS JetStream (a spawned
nats-server), one sidecar per object host and queue host, your apps as child
processes, and a client sidecar for you (port 3600 by default). Each process's
output is prefixed with its name. A crashed process is restarted after about
2 s. When everything is ready it writes .castellan/dev/state.json and prints
commands to try; Ctrl-C (or SIGTERM) stops everything and removes the file.

Options:
  -f, --file FILE    configuration (default castellan.dev.yaml)
  --port PORT        port of your client sidecar (overrides client.port)
  --state-dir DIR    where state.json and NATS data go (default .castellan/dev)
  --no-restart       do not restart crashed child processes
  -h, --help         show this help

Configuration (YAML):
  nats: {embedded: {servers: 1}}          # 1 or 3 servers, or {url: "nats://host:4222"}
  objects:                                 # DurableObject classes
    counter:
      hosts: 3                             # object-host sidecars counter-0..2, each with an app
      app: {command: "node examples/counter/app.js", env: {}}   # listens on $PORT
      concurrency: Serial                  # or Concurrent
      try: ["POST /increment", "GET /"]    # calls the banner suggests
  queues:                                  # ReplicatedQueues
    jobs: {hosts: 3, replicaCount: 2, visibilityTimeout: 30s, messageRetention: 4d,
           maxMessageBytes: 262144, delay: 0s, deadLetter: {queue: jobs-dead, maxReceiveCount: 5}}
  apps:                                    # other processes (workers); they get $PORT and
    worker: {command: "node examples/jobs/worker.js", replicas: 1, queue: jobs}   # $CASTELLAN_SIDECAR_URL
  client: {port: 3600}

Exit codes: 0 stopped by a signal, 1 failed to start, 2 bad flags or configuration.`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    { file: { type: 'string', short: 'f' }, port: { type: 'string' }, 'state-dir': { type: 'string' }, 'no-restart': { type: 'boolean' } },
    help,
  );
  if (flags === undefined) return 0;
  const file = flags.values.file ?? 'castellan.dev.yaml';
  if (!existsSync(file)) throw new UsageError(`configuration file ${file} not found (use -f FILE)`);
  const config = loadDevConfig(file, flags.values.port === undefined ? {} : { client: { port: flags.values.port } });
  const stateDir = flags.values['state-dir'] ?? join(process.cwd(), '.castellan', 'dev');
  const colour = isatty(1);
  // Output that never blocks, even if nobody reads it (a full pipe must not stall the children).
  const out = new FdWriter(1);
  useReadableLogs('dev', colour, Math.max(...processNames(config).map((n) => n.length)), new FdWriter(2));
  const log = logger('dev');

  // A signal during start-up aborts it; everything started so far is stopped.
  const abort = new AbortController();
  const onEarlySignal = (signal: NodeJS.Signals) => {
    log.info('signal received during start-up; stopping', { signal });
    abort.abort();
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onEarlySignal);
  let dev;
  try {
    dev = await runDev({ config, stateDir, restart: flags.values['no-restart'] !== true, colour, signal: abort.signal, output: out });
  } catch (err) {
    if (abort.signal.aborted) return 0;
    throw err;
  } finally {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onEarlySignal);
  }
  out.write(banner(dev.state, config, dev.statePath));
  return runUntilSignal(() => dev.stop(), log, 'stopping everything');
}
