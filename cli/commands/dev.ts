/**
 * `castellan dev [-f FILE] [--no-restart]`: the whole system on one machine.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { loadDevConfig } from '../../local/dev/config.ts';
import { runDev, type DevState } from '../../local/dev/run.ts';
import { logger } from '../../common/logger.ts';
import { runUntilSignal } from '../signals.ts';
import { parseFlags, UsageError } from '../usage.ts';

const help = `Usage: castellan dev [-f FILE] [--no-restart]

Runs Castellan on this machine: an embedded NATS JetStream, the sidecars and
your apps as child processes, and a client sidecar for you on port 3600.
Writes .castellan/dev/state.json when everything is ready; Ctrl-C stops it all.

Options:
  -f, --file FILE    configuration (default castellan.dev.yaml)
  --state-dir DIR    where state.json and NATS data go (default .castellan/dev)
  --no-restart       do not restart crashed child processes
  -h, --help         show this help`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    { file: { type: 'string', short: 'f' }, 'state-dir': { type: 'string' }, 'no-restart': { type: 'boolean' } },
    help,
  );
  if (flags === undefined) return 0;
  const file = flags.values.file ?? 'castellan.dev.yaml';
  if (!existsSync(file)) throw new UsageError(`configuration file ${file} not found (use -f FILE)`);
  const config = loadDevConfig(file);
  const stateDir = flags.values['state-dir'] ?? join(process.cwd(), '.castellan', 'dev');
  const dev = await runDev({ config, stateDir, restart: flags.values['no-restart'] !== true });
  process.stdout.write(banner(dev.state));
  return runUntilSignal(() => dev.stop(), logger('dev'), 'stopping everything');
}

function banner(state: DevState): string {
  const client = state.processes.find((p) => p.role === 'client');
  const url = `http://127.0.0.1:${client?.httpPort ?? 3600}`;
  return [
    '',
    'Castellan dev is ready.',
    `  NATS:    ${state.nats.urls.join(', ')}`,
    ...state.processes.map((p) => `  ${p.name.padEnd(8)} ${p.role} pid ${p.pid} on ${p.httpPort}`),
    '',
    'Try:',
    `  curl ${url}/healthz`,
    `  curl ${url}/readyz`,
    ...[...new Set(state.processes.filter((p) => p.role === 'object-host').map((p) => p.class))].map(
      (cls) => `  curl -X POST ${url}/v1/objects/${cls}/my-object/   # any path after the id goes to the app`,
    ),
    '',
    'Press Ctrl-C to stop.',
    '',
  ].join('\n');
}
