/**
 * The `castellan` command line: dispatches to one module per subcommand.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
 */
import { ConfigError } from '../common/config.ts';
import { describeError } from '../common/logger.ts';
import { UsageError } from './usage.ts';

const commands: Record<string, { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number | void> }> }> = {
  dev: { summary: 'run Castellan on this machine with an embedded NATS (castellan dev [-f FILE])', load: () => import('./commands/dev.ts') },
  sidecar: { summary: 'run the sidecar (configured by CASTELLAN_* environment variables or flags)', load: () => import('./commands/sidecar.ts') },
  cluster: { summary: 'start or stop a local Kubernetes with real nodes (castellan cluster up [--nodes N]|down)', load: () => import('./commands/cluster.ts') },
  image: { summary: 'build the Castellan and examples images without Docker (castellan image build [--load])', load: () => import('./commands/image.ts') },
  operator: { summary: 'run the operator that reconciles DurableObject and ReplicatedQueue resources', load: () => import('./commands/operator.ts') },
  call: { summary: 'call a durable object through a running sidecar (castellan call <class>/<id>[/path])', load: () => import('./commands/call.ts') },
  queue: { summary: 'send, receive, delete, stats or purge on a replicated queue through a running sidecar', load: () => import('./commands/queue.ts') },
  'nats-keys': { summary: 'make the keys and nats-server configuration of NATS operator mode for the auth callout (castellan nats-keys --dir DIR)', load: () => import('./commands/nats-keys.ts') },
  objects: { summary: 'list, inspect or delete the durable objects of a class (castellan objects list <class>)', load: () => import('./commands/objects.ts') },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'Usage: castellan <command> [options]',
    '',
    'Durable objects and replicated queues for Kubernetes.',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "castellan <command> --help" for the options of a command.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${helpText()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`castellan: unknown command "${name}"\n\n${helpText()}\n`);
    return 2;
  }
  try {
    const mod = await command.load();
    return (await mod.run(rest)) ?? 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`castellan ${name}: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`castellan ${name}: ${describeError(err)}\n`);
    return 1;
  }
}

/**
 * When a command has finished (a long-running one has stopped cleanly), the
 * process exits even if a library still holds a timer or socket: the command's
 * work is done, and a stopped sidecar must not linger for a pending long-poll.
 */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

main(process.argv.slice(2)).then(exitSoon, (err: unknown) => {
  process.stderr.write(`castellan: ${describeError(err)}\n`);
  exitSoon(1);
});
