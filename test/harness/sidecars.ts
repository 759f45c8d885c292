/**
 * Test harness: sidecars and test apps as real processes
 * (`node cli/main.ts sidecar` configured by env, like `castellan dev` does),
 * with their logs in a temporary directory for post-mortems.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnOwned, terminate } from '../../common/children.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';

export const logDir = mkdtempSync(join(tmpdir(), 'castellan-sidecars-'));
const cli = join(projectRoot, 'cli', 'main.ts');
const counterApp = join(projectRoot, 'test', 'harness', 'apps', 'counter-app.ts');

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
}

export interface SidecarProc extends Proc {
  port: number;
  url: string;
  app?: Proc & { port: number; url: string };
}

function spawnLogged(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(join(logDir, `${name}.log`), 'a');
  try {
    return spawnOwned(process.execPath, ['--disable-warning=ExperimentalWarning', ...args], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, CASTELLAN_LOG_LEVEL: process.env.CASTELLAN_LOG_LEVEL ?? 'info', ...env },
    });
  } finally {
    closeSync(fd);
  }
}

export async function waitHttp(url: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `${url} to answer 200`,
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      return res.ok ? true : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** Starts the counter test app on a free port (or the given one). */
export async function startApp(name: string, port?: number): Promise<Proc & { port: number; url: string }> {
  port ??= await freePort();
  const child = spawnLogged(name, [counterApp], { PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/stats`);
  return { name, child, pid: child.pid as number, port, url };
}

/**
 * Starts a sidecar with the given role and extra env; waits for /readyz unless
 * `wait: false`. `entry`: the `castellan` script to run (default: the
 * sources; the benchmark also runs the image's compiled one).
 */
export async function startSidecar(name: string, natsUrls: string[], env: NodeJS.ProcessEnv, opts: { wait?: boolean; port?: number; entry?: string } = {}): Promise<SidecarProc> {
  const port = opts.port ?? (await freePort());
  const child = spawnLogged(name, [opts.entry ?? cli, 'sidecar'], {
    CASTELLAN_HTTP_PORT: String(port),
    CASTELLAN_NATS_URL: natsUrls.join(','),
    POD_NAME: name,
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  const proc: SidecarProc = { name, child, pid: child.pid as number, port, url };
  if (opts.wait !== false) await waitHttp(`${url}/readyz`);
  return proc;
}

/** An object host: the counter app plus its sidecar. */
export async function startHost(name: string, cls: string, natsUrls: string[], env: NodeJS.ProcessEnv = {}): Promise<SidecarProc> {
  const app = await startApp(`${name}-app`);
  const sc = await startSidecar(name, natsUrls, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: cls, CASTELLAN_APP_PORT: String(app.port), ...env });
  sc.app = app;
  return sc;
}

export function startClient(name: string, natsUrls: string[], env: NodeJS.ProcessEnv = {}): Promise<SidecarProc> {
  return startSidecar(name, natsUrls, { CASTELLAN_ROLE: 'client', ...env });
}

/** Stops a sidecar (and its app) gracefully. */
export async function stopProc(p: SidecarProc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p === undefined) return;
  await terminate(p.child, signal, 10_000);
  if (p.app !== undefined) await terminate(p.app.child, 'SIGKILL', 1_000);
}

export function signal(p: Proc, sig: NodeJS.Signals): void {
  process.kill(p.pid, sig);
}
