/**
 * The benchmark's world, all real processes on 127.0.0.1: a 3-node NATS
 * JetStream cluster (test/harness/nats.ts → local/nats-cluster.ts, the same
 * launcher `castellan dev` uses), object hosts (bench app + sidecar, spawned
 * through test/harness/sidecars.ts like the integration tests), client
 * sidecars, queue hosts and baseline responders. Everything started here is
 * stopped by `dispose()` (and killed if the runner dies: common/children.ts).
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { exited, spawnOwned, terminate } from '../../common/children.ts';
import { freePort, sleep } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { imageRuntimeEnv } from '../../local/image/build.ts';
import { startNats, type TestNats } from '../../test/harness/nats.ts';
import { logDir, startSidecar, waitHttp, type Proc, type SidecarProc } from '../../test/harness/sidecars.ts';

export { logDir };

const memApp = join(projectRoot, 'bench', 'apps', 'mem-app.ts');
const responderApp = join(projectRoot, 'bench', 'apps', 'nats-responder.ts');

export interface Host {
  name: string;
  cls: string;
  sidecar: SidecarProc;
  app: Proc & { port: number };
}

/**
 * Env every bench sidecar gets: quiet logs (the benchmark measures serving,
 * not logging); with BENCH_CPU_PROF=<dir>, a V8 CPU profile per sidecar
 * (written when it exits gracefully, at dispose).
 */
const profiling = process.env.BENCH_CPU_PROF ? `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF}` : '';
const quiet: NodeJS.ProcessEnv = {
  CASTELLAN_LOG_LEVEL: process.env.BENCH_SIDECAR_LOG_LEVEL ?? 'warn',
  ...(profiling !== '' ? { NODE_OPTIONS: profiling } : {}),
};

/** NODE_OPTIONS for a bench sidecar that needs `extra` node flags (keeps profiling when it is on). */
export function nodeOptions(extra: string): NodeJS.ProcessEnv {
  return { NODE_OPTIONS: [profiling, extra].filter((x) => x !== '').join(' ') };
}

export function spawnNode(name: string, script: string, env: NodeJS.ProcessEnv): Proc {
  const fd = openSync(join(logDir, `${name}.log`), 'a');
  try {
    const child = spawnOwned(process.execPath, ['--disable-warning=ExperimentalWarning', script], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    return { name, child, pid: child.pid as number };
  } finally {
    closeSync(fd);
  }
}

/** The last non-empty line of a process's log (for error messages). */
function lastLine(name: string): string {
  try {
    return (readFileSync(join(logDir, `${name}.log`), 'utf8').trim().split('\n').at(-1) ?? '').slice(0, 300);
  } catch {
    return '(no log)';
  }
}

export function alive(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

export class BenchEnv {
  readonly nats: TestNats;
  /** Sidecars that died or hung during start-up and were started again (as `castellan dev` would). */
  readonly restarts: string[] = [];
  private readonly procs: Proc[] = [];
  private seq = 0;
  private ncs: NatsConnection[] = [];

  private constructor(nats: TestNats) {
    this.nats = nats;
  }

  /** `syncAlways: false` only for a scenario's own cluster that it measures reads on (listing). */
  static async start(opts: { syncAlways?: boolean } = {}): Promise<BenchEnv> {
    return new BenchEnv(await startNats(3, opts.syncAlways === false ? { syncAlways: false } : {}));
  }

  get urls(): string[] {
    return this.nats.urls;
  }

  /** A NATS connection for the benchmark process itself (closed by dispose). */
  async connect(): Promise<NatsConnection> {
    const nc = await this.nats.connect();
    this.ncs.push(nc);
    return nc;
  }

  /** Starts the bench app on a free port, told its sidecar's URL. */
  async startApp(name: string, host: string, sidecarPort: number): Promise<Proc & { port: number }> {
    const port = await freePort();
    const p = spawnNode(name, memApp, { PORT: String(port), BENCH_HOST: host, CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${sidecarPort}` });
    this.procs.push(p);
    await waitHttp(`http://127.0.0.1:${port}/whoami`);
    return { ...p, port };
  }

  /**
   * Starts a sidecar and waits for /readyz. One that exits or is not ready in
   * time is killed and started again, up to 3 attempts — what `castellan dev`
   * and a kubelet do — and the restart is recorded in the report.
   */
  private async sidecar(name: string, env: NodeJS.ProcessEnv, port?: number, entry = process.env.BENCH_SIDECAR_ENTRY): Promise<SidecarProc> {
    for (let attempt = 1; ; attempt++) {
      const p = await startSidecar(name, this.urls, { ...quiet, ...env }, { wait: false, ...(port !== undefined ? { port } : {}), ...(entry !== undefined ? { entry } : {}) });
      this.procs.push(p);
      try {
        await Promise.race([
          waitHttp(`${p.url}/readyz`, 30_000),
          exited(p.child).then(() => {
            throw new Error(`exited with ${p.child.exitCode ?? p.child.signalCode}`);
          }),
        ]);
        return p;
      } catch (err) {
        await terminate(p.child, 'SIGKILL', 1_000);
        const why = `${name} (attempt ${attempt}): ${err instanceof Error ? err.message : String(err)}; log: ${lastLine(name)}`;
        if (attempt >= 3) throw new Error(`sidecar ${why}`, { cause: err });
        this.restarts.push(why);
        console.error(`[bench] sidecar ${why}; starting it again`);
        await sleep(2_000);
      }
    }
  }

  /** One object host of `cls`: bench app + object-host sidecar. `name` defaults to `<cls>-<n>`. */
  async startHost(cls: string, env: NodeJS.ProcessEnv = {}, name = `${cls}-${this.seq++}`): Promise<Host> {
    const port = await freePort();
    const app = await this.startApp(`${name}-app`, name, port);
    const sidecar = await this.sidecar(name, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: cls, CASTELLAN_APP_PORT: String(app.port), ...env }, port);
    return { name, cls, sidecar, app };
  }

  /**
   * An object host whose sidecar runs as in the image: the compiled app tree
   * (bench/lib/image-app.ts), NODE_ENV=production and the image's Node options.
   */
  async startImageHost(cls: string, appTree: string, name = `${cls}-${this.seq++}`): Promise<Host> {
    const port = await freePort();
    const app = await this.startApp(`${name}-app`, name, port);
    const sidecar = await this.sidecar(
      name,
      { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: cls, CASTELLAN_APP_PORT: String(app.port), ...imageRuntimeEnv },
      port,
      join(appTree, 'bin', 'castellan.js'),
    );
    return { name, cls, sidecar, app };
  }

  /** An idle Node process of the same binary, nothing loaded (the floor under any sidecar's RSS). */
  startIdleNode(name = `idle-node-${this.seq++}`): Proc {
    const fd = openSync(join(logDir, `${name}.log`), 'a');
    try {
      const child = spawnOwned(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: ['ignore', fd, fd] });
      const p = { name, child, pid: child.pid as number };
      this.procs.push(p);
      return p;
    } finally {
      closeSync(fd);
    }
  }

  async startHosts(cls: string, n: number, env: NodeJS.ProcessEnv = {}): Promise<Host[]> {
    return Promise.all(Array.from({ length: n }, () => this.startHost(cls, env)));
  }

  async startClient(name = `client-${this.seq++}`, env: NodeJS.ProcessEnv = {}): Promise<SidecarProc> {
    return this.sidecar(name, { CASTELLAN_ROLE: 'client', ...env });
  }

  /** A queue host sidecar (SPEC §2.3 role `queue-host`), named `<queue>-<ordinal>`. */
  async startQueueHost(queue: string, ordinal: number, env: NodeJS.ProcessEnv): Promise<SidecarProc> {
    return this.sidecar(`${queue}-${ordinal}`, { CASTELLAN_ROLE: 'queue-host', CASTELLAN_QUEUE: queue, ...env });
  }

  /** A baseline responder (bench/apps/nats-responder.ts) with its own bench app. */
  async startResponder(subject: string, queue?: string): Promise<{ responder: Proc; app: Proc & { port: number } }> {
    const name = `responder-${this.seq++}`;
    const app = await this.startApp(`${name}-app`, name, 0);
    const responder = spawnNode(name, responderApp, {
      NATS_URL: this.urls.join(','),
      SUBJECT: subject,
      APP_PORT: String(app.port),
      BENCH_HOST: name,
      ...(queue !== undefined ? { QUEUE: queue } : {}),
    });
    this.procs.push(responder);
    return { responder, app };
  }

  /** Stops processes (SIGTERM, SIGKILL after a grace period). */
  async stop(...ps: (Proc | undefined)[]): Promise<void> {
    await Promise.all(ps.map((p) => (p === undefined ? undefined : terminate(p.child, 'SIGTERM', 5_000))));
  }

  async stopHosts(hosts: Host[]): Promise<void> {
    await this.stop(...hosts.flatMap((h) => [h.sidecar, h.app]));
  }

  /** kill -9 a host: its sidecar and its app, like a pod dying. */
  killHost(h: Host): void {
    for (const p of [h.sidecar, h.app]) if (alive(p)) p.child.kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    // SIGTERM first: sidecars drain and exit, and write their CPU profiles when asked to.
    await Promise.allSettled(this.procs.map((p) => terminate(p.child, 'SIGTERM', 5_000)));
    await Promise.allSettled(this.ncs.map((nc) => nc.close()));
    await this.nats.dispose();
  }
}
