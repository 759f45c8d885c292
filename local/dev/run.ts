/**
 * `castellan dev`: Castellan on one machine (SPEC §4). Starts the embedded
 * NATS (or uses the configured one), then as child processes: each object
 * class's apps and host sidecars, each queue's host sidecars, the client
 * sidecar, and once those are ready the extra apps (workers). Writes
 * `.castellan/dev/state.json` when everything is ready and keeps it current
 * across restarts; `stop` stops everything in order and removes it.
 */
import { createServer } from 'node:net';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts, WaitAborted, waitFor } from '../../common/net.ts';
import { formatDuration } from '../../common/duration.ts';
import { logger } from '../../common/logger.ts';
import { projectRoot } from '../../common/paths.ts';
import { NatsCluster } from '../nats-cluster.ts';
import { processNames, type DevApp, type DevConfig, type DevQueue } from './config.ts';
import { devNatsEnv, embeddedSecurity } from './nats-auth.ts';
import { FdWriter, type TextSink } from './output.ts';
import { Reaper } from './reaper.ts';
import { Supervisor, type ChildSpec } from './supervisor.ts';
import { startQueueControl, type QueueControl } from './queue-control.ts';

export interface DevOptions {
  config: DevConfig;
  /** Directory for state.json and the embedded NATS data (default `.castellan/dev`). */
  stateDir: string;
  restart: boolean;
  /** Where the children's prefixed output goes (default stdout, never blocking). */
  output?: TextSink;
  /** Colour the output prefixes (default: when stdout is a terminal). */
  colour?: boolean;
  /** How long to wait for every sidecar to be ready (default 120 s). */
  readyTimeoutMs?: number;
  /** Aborts the start-up (SIGINT while starting): everything started so far is stopped. */
  signal?: AbortSignal;
}

export type ProcessRole = 'object-host' | 'queue-host' | 'client' | 'app';

/** One entry of state.json's `processes` (SPEC §4). */
export interface ProcessState {
  name: string;
  role: ProcessRole;
  class?: string;
  queue?: string;
  pid: number;
  httpPort: number;
}

/** `.castellan/dev/state.json` (SPEC §4). */
export interface DevState {
  ready: boolean;
  nats: { urls: string[] };
  processes: ProcessState[];
}

export interface Dev {
  state: DevState;
  statePath: string;
  stop(): Promise<void>;
}

const cliEntry = join(projectRoot, 'cli', 'main.ts');

interface Planned {
  info: Omit<ProcessState, 'pid'>;
  spec: ChildSpec;
  /** Sidecars are waited for (GET /readyz) before the state file is written. */
  sidecar: boolean;
  /** Started after every sidecar is ready (apps that call the client sidecar). */
  late: boolean;
}

/** Fails fast, with a useful message, when the client port is taken (another `castellan dev`?). */
async function ensurePortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} on 127.0.0.1 is already in use (another "castellan dev"?); stop it or set client.port`
            : `cannot listen on 127.0.0.1:${port}: ${err.message}`,
        ),
      ),
    );
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

function shellSpec(name: string, app: DevApp, env: NodeJS.ProcessEnv): ChildSpec {
  return {
    name,
    command: '/bin/sh',
    args: ['-c', `exec ${app.command}`],
    env: { ...process.env, ...app.env, ...env },
    ...(app.cwd === undefined ? {} : { cwd: app.cwd }),
  };
}

function ms(v: number): string {
  return formatDuration(v);
}

/** Plans every child process of a configuration (no I/O but choosing free ports). */
async function plan(config: DevConfig, urls: string[], natsEnv: Record<string, string> = {}): Promise<Planned[]> {
  const planned: Planned[] = [];
  const sidecar = (name: string, role: ProcessRole, httpPort: number, env: NodeJS.ProcessEnv, extra: { class?: string; queue?: string } = {}) => {
    planned.push({
      info: { name, role, ...extra, httpPort },
      sidecar: true,
      late: false,
      spec: {
        name,
        command: process.execPath,
        args: ['--disable-warning=ExperimentalWarning', cliEntry, 'sidecar'],
        env: {
          ...process.env,
          CASTELLAN_ROLE: role,
          CASTELLAN_HTTP_PORT: String(httpPort),
          CASTELLAN_NATS_URL: urls.join(','),
          POD_NAME: name,
          POD_NAMESPACE: 'default',
          ...natsEnv,
          ...env,
        },
      },
    });
  };

  for (const [cls, def] of Object.entries(config.objects)) {
    for (let i = 0; i < def.hosts; i++) {
      const [appPort, httpPort] = (await freePorts(2)) as [number, number];
      const name = `${cls}-${i}`;
      // The app first: its sidecar's readiness includes reaching it.
      planned.push({
        info: { name: `${name}-app`, role: 'app', class: cls, httpPort: appPort },
        sidecar: false,
        late: false,
        spec: shellSpec(`${name}-app`, def.app, { PORT: String(appPort), CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${httpPort}` }),
      });
      sidecar(
        name,
        'object-host',
        httpPort,
        {
          CASTELLAN_CLASS: cls,
          CASTELLAN_APP_PORT: String(appPort),
          CASTELLAN_CONCURRENCY: def.concurrency,
          ...(def.idleTimeout === undefined ? {} : { CASTELLAN_IDLE_TIMEOUT: ms(def.idleTimeout) }),
          ...(def.turnTimeout === undefined ? {} : { CASTELLAN_TURN_TIMEOUT: ms(def.turnTimeout) }),
          ...(def.leaseTtl === undefined ? {} : { CASTELLAN_LEASE_TTL: ms(def.leaseTtl) }),
        },
        { class: cls },
      );
    }
  }

  for (const [queue, def] of Object.entries(config.queues)) {
    for (let i = 0; i < def.hosts; i++) {
      const [httpPort] = (await freePorts(1)) as [number];
      sidecar(
        `${queue}-${i}`,
        'queue-host',
        httpPort,
        {
          CASTELLAN_QUEUE: queue,
          CASTELLAN_QUEUE_HOSTS: String(def.hosts),
          CASTELLAN_QUEUE_REPLICA_COUNT: String(def.replicaCount),
          CASTELLAN_VISIBILITY_TIMEOUT: ms(def.visibilityTimeout),
          CASTELLAN_MESSAGE_RETENTION: ms(def.messageRetention),
          CASTELLAN_MAX_MESSAGE_BYTES: String(def.maxMessageBytes),
          CASTELLAN_QUEUE_DELAY: ms(def.delay),
          ...(def.deadLetter === undefined
            ? {}
            : { CASTELLAN_DEAD_LETTER_QUEUE: def.deadLetter.queue, CASTELLAN_MAX_RECEIVE_COUNT: String(def.deadLetter.maxReceiveCount) }),
        },
        { queue },
      );
    }
  }

  const clientUrl = `http://127.0.0.1:${config.client.port}`;
  sidecar('client', 'client', config.client.port, {});

  for (const [app, def] of Object.entries(config.apps)) {
    for (let i = 0; i < def.replicas; i++) {
      const [port] = (await freePorts(1)) as [number];
      const name = `${app}-${i}`;
      planned.push({
        info: { name, role: 'app', ...(def.class === undefined ? {} : { class: def.class }), ...(def.queue === undefined ? {} : { queue: def.queue }), httpPort: port },
        sidecar: false,
        late: true,
        spec: shellSpec(name, def, { PORT: String(port), CASTELLAN_SIDECAR_URL: clientUrl, CASTELLAN_APP_REPLICA: String(i) }),
      });
    }
  }
  return planned;
}

export async function runDev(opts: DevOptions): Promise<Dev> {
  const log = logger('dev');
  const output = opts.output ?? new FdWriter(1);
  mkdirSync(opts.stateDir, { recursive: true });
  const statePath = join(opts.stateDir, 'state.json');
  rmSync(statePath, { force: true });
  await ensurePortFree(opts.config.client.port);
  // If castellan dev itself is killed (-9) or crashes, the reaper stops what it started.
  const reaper = Reaper.start();
  const reapNats = () => {
    for (const node of nats?.nodes ?? []) if (node.process?.pid !== undefined) reaper.add(node.process.pid);
  };

  let stopping = false;
  let nats: NatsCluster | undefined;
  let urls: string[];
  if ('embedded' in opts.config.nats) {
    const servers = opts.config.nats.embedded.servers;
    const dir = join(opts.stateDir, 'nats');
    rmSync(dir, { recursive: true, force: true });
    log.info('starting embedded NATS JetStream', { servers, dir });
    nats = await NatsCluster.start({
      servers,
      dir,
      ...(opts.config.nats.auth === undefined ? {} : { security: embeddedSecurity(opts.config.nats.auth) }),
      detached: true,
      onUnexpectedExit: (node) => {
        if (!opts.restart || stopping) return;
        log.warn('nats-server exited; restarting it', { node: node.name, inMs: 2_000 });
        setTimeout(() => {
          if (stopping) return;
          nats
            ?.restart(node.index)
            .then(reapNats)
            .catch((err: unknown) => {
              // A restart still waiting for the cluster when castellan dev stops is cut short by the stop, not failed.
              if (!stopping) log.error('restarting nats-server failed', { node: node.name, error: String(err) });
            });
        }, 2_000);
      },
    });
    urls = nats.urls;
    reapNats();
  } else {
    urls = opts.config.nats.url.split(',').map((u) => u.trim());
  }

  const planned = await plan(opts.config, urls, devNatsEnv(opts.config.nats));
  let ready = false;
  const state = (): DevState => ({
    ready: true,
    nats: { urls },
    processes: planned
      .filter((p) => supervisor.get(p.spec.name) !== undefined)
      .map(({ info: { httpPort, ...rest }, spec }) => ({ ...rest, pid: supervisor.get(spec.name)?.process?.pid ?? 0, httpPort })),
  });
  const writeState = () => {
    const tmp = `${statePath}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(state(), null, 2)}\n`);
    renameSync(tmp, statePath);
  };

  const supervisor = new Supervisor({
    restart: opts.restart,
    log,
    output,
    groups: reaper,
    colour: opts.colour ?? false,
    onSpawn: () => {
      if (ready && !stopping) writeState();
    },
  });
  supervisor.setNames(processNames(opts.config));

  let queueControl: QueueControl | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      stopping = true;
      rmSync(statePath, { force: true });
      await queueControl?.stop();
      const names = (f: (p: Planned) => boolean) => planned.filter(f).map((p) => p.spec.name);
      // Callers first, then the client sidecar, then the hosts (they hand their objects over), then their apps.
      await supervisor.stopAll([
        names((p) => p.late),
        names((p) => p.info.role === 'client'),
        names((p) => p.sidecar),
        names(() => true),
      ]);
      await nats?.shutdown();
      reaper.close();
      log.info('castellan dev stopped');
    })();
    return stopped;
  };

  const waitReady = (list: Planned[]) =>
    Promise.all(
      list.map((p) =>
        waitFor(
          `${p.info.name} to be ready (GET http://127.0.0.1:${p.info.httpPort}/readyz)`,
          async () => {
            if (opts.signal?.aborted === true) throw new WaitAborted('start-up interrupted');
            const res = await fetch(`http://127.0.0.1:${p.info.httpPort}/readyz`, { signal: AbortSignal.timeout(2_000) });
            await res.arrayBuffer();
            return res.ok ? true : undefined;
          },
          { timeoutMs: opts.readyTimeoutMs ?? 120_000, intervalMs: 250 },
        ),
      ),
    );

  try {
    if (opts.signal?.aborted === true) throw new WaitAborted('start-up interrupted');
    for (const p of planned.filter((x) => !x.late)) supervisor.start(p.spec);
    await waitReady(planned.filter((p) => p.sidecar));
    for (const p of planned.filter((x) => x.late)) supervisor.start(p.spec);
  } catch (err) {
    await stop();
    throw err;
  }
  // Queues created and deleted through the SQS API get and lose their host sidecars at runtime.
  const startHosts = async (name: string, def: DevQueue): Promise<void> => {
    const extra = (await plan({ ...opts.config, objects: {}, apps: {}, queues: { [name]: def } }, urls)).filter((p) => p.info.role === 'queue-host');
    for (const p of extra) if (supervisor.get(p.spec.name) !== undefined) throw new Error(`a process named ${p.spec.name} already runs`);
    planned.push(...extra);
    for (const p of extra) supervisor.start(p.spec);
    await waitReady(extra);
    if (!stopping) writeState();
  };
  const stopHosts = async (name: string): Promise<void> => {
    const mine = planned.filter((p) => p.info.role === 'queue-host' && p.info.queue === name);
    await supervisor.remove(mine.map((p) => p.spec.name));
    for (const p of mine) planned.splice(planned.indexOf(p), 1);
    if (!stopping) writeState();
  };
  try {
    const n = opts.config.nats;
    const security = { ...(n.auth === undefined ? {} : { auth: n.auth }), ...('tls' in n && n.tls !== undefined ? { tls: n.tls } : {}) };
    queueControl = await startQueueControl(urls, { startHosts, stopHosts }, log.child({ component: 'dev.queues' }), { security });
  } catch (err) {
    await stop();
    throw err;
  }
  ready = true;
  writeState();
  log.info('castellan dev ready', { state: statePath });
  return { stop, state: state(), statePath };
}
