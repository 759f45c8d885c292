/**
 * `castellan dev`: Castellan on one machine. Starts the embedded NATS (or uses
 * the configured one), the sidecars as child processes, waits until every one
 * is ready, writes `.castellan/dev/state.json` (SPEC §4) and keeps it current
 * across restarts; SIGINT/SIGTERM stop everything and remove it.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts, waitFor } from '../../common/net.ts';
import { logger } from '../../common/logger.ts';
import { projectRoot } from '../../common/paths.ts';
import { NatsCluster } from '../nats-cluster.ts';
import type { DevConfig } from './config.ts';
import { Supervisor, type ChildSpec } from './supervisor.ts';

export interface DevOptions {
  config: DevConfig;
  /** Directory for state.json and the embedded NATS data (default `.castellan/dev`). */
  stateDir: string;
  restart: boolean;
  output?: NodeJS.WritableStream;
}

export interface ProcessState {
  name: string;
  role: 'object-host' | 'queue-host' | 'client' | 'app';
  class?: string;
  queue?: string;
  pid: number;
  httpPort: number;
}

export interface DevState {
  ready: boolean;
  nats: { urls: string[] };
  processes: ProcessState[];
}

const cliEntry = join(projectRoot, 'cli', 'main.ts');

export async function runDev(opts: DevOptions): Promise<{ stop(): Promise<void>; state: DevState }> {
  const log = logger('dev');
  const output = opts.output ?? process.stdout;
  mkdirSync(opts.stateDir, { recursive: true });
  const statePath = join(opts.stateDir, 'state.json');
  rmSync(statePath, { force: true });

  let nats: NatsCluster | undefined;
  let urls: string[];
  if ('embedded' in opts.config.nats) {
    const servers = opts.config.nats.embedded.servers;
    const dir = join(opts.stateDir, 'nats');
    rmSync(dir, { recursive: true, force: true });
    log.info('starting embedded NATS JetStream', { servers });
    nats = await NatsCluster.start({
      servers,
      dir,
      onUnexpectedExit: (node) => {
        if (!opts.restart) return;
        setTimeout(() => {
          nats?.restart(node.index).catch((err: unknown) => log.error('restarting nats-server failed', { node: node.name, error: String(err) }));
        }, 2_000);
      },
    });
    urls = nats.urls;
  } else {
    urls = opts.config.nats.url.split(',');
  }

  const processes: (Omit<ProcessState, 'pid'> & { spec: ChildSpec })[] = [];
  const sidecar = (name: string, role: ProcessState['role'], httpPort: number, env: NodeJS.ProcessEnv, extra: { class?: string } = {}) => {
    const spec: ChildSpec = {
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
        ...env,
      },
    };
    processes.push({ name, role, ...extra, httpPort, spec });
  };
  for (const [cls, def] of Object.entries(opts.config.objects)) {
    for (let i = 0; i < def.hosts; i++) {
      const [appPort, httpPort] = (await freePorts(2)) as [number, number];
      const name = `${cls}-${i}`;
      sidecar(name, 'object-host', httpPort, {
        CASTELLAN_CLASS: cls,
        CASTELLAN_APP_PORT: String(appPort),
        CASTELLAN_CONCURRENCY: def.concurrency,
        ...(def.idleTimeout === undefined ? {} : { CASTELLAN_IDLE_TIMEOUT: `${def.idleTimeout}ms` }),
        ...(def.leaseTtl === undefined ? {} : { CASTELLAN_LEASE_TTL: `${def.leaseTtl}ms` }),
      }, { class: cls });
      processes.push({
        name: `${name}-app`,
        role: 'app',
        class: cls,
        httpPort: appPort,
        spec: {
          name: `${name}-app`,
          command: '/bin/sh',
          args: ['-c', `exec ${def.app.command}`],
          env: { ...process.env, ...def.app.env, PORT: String(appPort), CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${httpPort}` },
        },
      });
    }
  }
  sidecar('client', 'client', opts.config.client.port, {});

  const state = (): DevState => ({
    ready: true,
    nats: { urls },
    processes: processes.map(({ spec, ...p }) => ({ ...p, pid: supervisor.get(spec.name)?.process?.pid ?? 0 })),
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
    onRestart: () => writeState(),
  });

  const stop = async () => {
    rmSync(statePath, { force: true });
    await supervisor.stopAll();
    await nats?.shutdown();
    log.info('castellan dev stopped');
  };

  try {
    for (const p of processes) supervisor.start(p.spec);
    await Promise.all(
      processes.filter((p) => p.role !== 'app').map((p) =>
        waitFor(`${p.name} to be ready on port ${p.httpPort}`, async () => {
          const res = await fetch(`http://127.0.0.1:${p.httpPort}/readyz`, { signal: AbortSignal.timeout(1_000) });
          return res.ok ? true : undefined;
        }, { timeoutMs: 60_000, intervalMs: 200 }),
      ),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  writeState();
  return { stop, state: state() };
}
