/**
 * The "ready" banner `castellan dev` prints: where everything runs and curl
 * commands to try against the client sidecar.
 */
import type { DevConfig } from './config.ts';
import type { DevState } from './run.ts';

/** Quotes a string for a POSIX shell. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function curl(method: string, url: string, body?: string): string {
  const parts = ['curl'];
  if (method !== 'GET') parts.push('-X', method);
  if (body !== undefined) parts.push('-H', shellQuote('content-type: application/json'), '-d', shellQuote(body));
  parts.push(url);
  return `  ${parts.join(' ')}`;
}

export function banner(state: DevState, config: DevConfig, statePath = '.castellan/dev/state.json'): string {
  const client = state.processes.find((p) => p.role === 'client');
  const url = `http://127.0.0.1:${client?.httpPort ?? config.client.port}`;
  const width = Math.max(...state.processes.map((p) => p.name.length));
  const lines = [
    '',
    'Castellan dev is ready.',
    `  nats          ${state.nats.urls.join(', ')}`,
    ...state.processes.map((p) => {
      const of = p.class !== undefined ? ` ${p.class}` : p.queue !== undefined ? ` ${p.queue}` : '';
      return `  ${p.name.padEnd(Math.max(width, 12))}  ${`${p.role}${of}`.padEnd(20)} pid ${String(p.pid).padEnd(7)} 127.0.0.1:${p.httpPort}`;
    }),
    '',
    `Your sidecar: ${url}   state: ${statePath}`,
    '',
    'Try:',
    curl('GET', `${url}/readyz`),
  ];
  for (const [cls, def] of Object.entries(config.objects)) {
    const calls = def.try.length > 0 ? def.try : ['POST /'];
    for (const call of calls) {
      const m = /^(\S+) (\S+)(?: (.+))?$/.exec(call);
      if (m === null) continue;
      const [, method, path, body] = m as unknown as [string, string, string, string | undefined];
      lines.push(curl(method, `${url}/v1/objects/${cls}/demo${path === '/' ? '/' : path}`, body));
    }
  }
  const [queue] = Object.keys(config.queues);
  if (queue !== undefined) {
    const consumers = Object.entries(config.apps).filter(([, a]) => a.queue === queue).map(([name]) => `${name}-0`);
    lines.push(curl('POST', `${url}/v1/queues/${queue}/messages`, '{"body":"hello"}'));
    // With a worker on the queue, a receive by hand would race it: show who receives instead.
    if (consumers.length === 0) lines.push(curl('POST', `${url}/v1/queues/${queue}/receive`, '{"maxMessages":1,"waitSeconds":5}'));
    else lines.push(`  # ${consumers.join(', ')} receives the messages of ${queue}: watch its output below`);
    lines.push(curl('GET', `${url}/v1/queues/${queue}`));
  }
  lines.push('', 'Or with the CLI: npx castellan call|queue --help', 'Press Ctrl-C to stop everything.', '');
  return lines.join('\n');
}
