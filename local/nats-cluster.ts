/**
 * A NATS JetStream cluster of 1 or more nats-server processes on 127.0.0.1.
 *
 * Used by `castellan dev` (the embedded NATS) and by every integration test.
 * Each node gets its own server name, a unique server tag (`node:<name>`), a
 * store directory and `sync_interval: always`, so an acknowledged write is on
 * disk before the ack: a test that kill -9s a node is testing real durability.
 * Nodes can be killed, stopped (SIGSTOP), continued and restarted on the same
 * ports and store.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, spawnOwned, terminate } from '../common/children.ts';
import { freePorts, getJson, WaitAborted, waitFor } from '../common/net.ts';
import { toolPath } from '../common/paths.ts';
import { logger, type Logger } from '../common/logger.ts';

export const MIN_NATS_SERVER = [2, 12, 0] as const;

export interface NatsClusterOptions {
  /** Number of servers (1, or 3 for a fault-tolerant R3 cluster). */
  servers: number;
  /** Data directory: configs, stores and logs live below it. */
  dir: string;
  /** Cluster name (default `castellan`). */
  name?: string;
  /** Fixed client ports, one per server (default: free ports). */
  clientPorts?: number[];
  /** Max payload in bytes (default 8 MiB: 1 MiB storage values plus headers must fit). */
  maxPayload?: number;
  /**
   * `sync_interval: always` (default true): every acknowledged write is on disk.
   * Only the benchmark turns it off, for a class it builds just to measure reads.
   */
  syncAlways?: boolean;
  /**
   * Run each server in its own process group, so a terminal's Ctrl-C reaches only
   * the owner (castellan dev), which stops the servers last (default false).
   */
  detached?: boolean;
  /**
   * Client authentication and TLS (docs/security.md). `auth` writes a simple
   * `authorization` block (one user+password, a token, or nkey users);
   * `config` is written verbatim for anything else (accounts, operator mode,
   * an auth callout). Cluster routes are not authenticated (loopback only).
   */
  security?: NatsServerSecurity;
  /** Called when a node exits without being asked to (kill -9 from outside, crash). */
  onUnexpectedExit?: (node: NatsNode, code: number | null, signal: NodeJS.Signals | null) => void;
  log?: Logger;
}

export interface NatsServerSecurity {
  auth?: { user: string; password: string } | { token: string } | { nkeys: string[] };
  /**
   * Extra server configuration, written verbatim (e.g. `accounts {…}` and `authorization { auth_callout {…} }`);
   * a function for what differs per server (operator mode's resolver directory, local/nats-operator-mode.ts).
   */
  config?: string | ((node: NatsNode) => string);
  /** TLS on the client port: server certificate and key; with `ca` and `verify`, clients must show a certificate it signed. */
  tls?: { cert: string; key: string; ca?: string; verify?: boolean };
}

export interface NatsNode {
  index: number;
  name: string;
  clientPort: number;
  clusterPort: number;
  monitorPort: number;
  url: string;
  configFile: string;
  storeDir: string;
  logFile: string;
  process?: ChildProcess;
  state: 'running' | 'stopped' | 'dead';
}

interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: { current?: boolean }[] };
}

export class NatsCluster {
  readonly nodes: NatsNode[];
  readonly name: string;
  private readonly binary: string;
  private readonly log: Logger;
  private readonly onUnexpectedExit: NatsClusterOptions['onUnexpectedExit'];
  private readonly detached: boolean;
  private expectedExits = new Set<ChildProcess>();

  private constructor(nodes: NatsNode[], name: string, binary: string, opts: NatsClusterOptions) {
    this.nodes = nodes;
    this.name = name;
    this.binary = binary;
    this.log = opts.log ?? logger('nats-cluster');
    this.onUnexpectedExit = opts.onUnexpectedExit;
    this.detached = opts.detached ?? false;
  }

  /** Starts every server and waits until JetStream has a meta leader. */
  static async start(opts: NatsClusterOptions): Promise<NatsCluster> {
    if (!Number.isInteger(opts.servers) || opts.servers < 1) throw new Error(`servers must be a positive integer, got ${opts.servers}`);
    const binary = toolPath('nats-server');
    checkServerVersion(binary);
    const n = opts.servers;
    const ports = await freePorts(n * 3);
    const name = opts.name ?? 'castellan';
    mkdirSync(opts.dir, { recursive: true });
    const nodes: NatsNode[] = [];
    for (let i = 0; i < n; i++) {
      const clientPort = opts.clientPorts?.[i] ?? (ports[i * 3] as number);
      const node: NatsNode = {
        index: i,
        name: `n${i}`,
        clientPort,
        clusterPort: ports[i * 3 + 1] as number,
        monitorPort: ports[i * 3 + 2] as number,
        url: `nats://127.0.0.1:${clientPort}`,
        configFile: join(opts.dir, `n${i}.conf`),
        storeDir: join(opts.dir, `n${i}`),
        logFile: join(opts.dir, `n${i}.log`),
        state: 'dead',
      };
      nodes.push(node);
    }
    for (const node of nodes) writeFileSync(node.configFile, serverConfig(node, nodes, name, opts.maxPayload, opts.security, opts.syncAlways ?? true));
    const cluster = new NatsCluster(nodes, name, binary, opts);
    try {
      for (const node of nodes) cluster.spawnNode(node);
      await cluster.waitReady(30_000, true);
    } catch (err) {
      await cluster.shutdown();
      throw err;
    }
    return cluster;
  }

  /** Client URLs of every node (including ones currently down). */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  private node(i: number): NatsNode {
    const node = this.nodes[i];
    if (node === undefined) throw new Error(`no NATS node ${i} (cluster has ${this.nodes.length})`);
    return node;
  }

  private spawnNode(node: NatsNode): void {
    const fd = openSync(node.logFile, 'a');
    try {
      const child = spawnOwned(this.binary, ['-c', node.configFile], { stdio: ['ignore', fd, fd], detached: this.detached });
      node.process = child;
      node.state = 'running';
      child.once('exit', (code, signal) => {
        if (node.process === child) node.state = 'dead';
        if (this.expectedExits.delete(child)) return;
        this.log.warn('nats-server exited unexpectedly', { node: node.name, code, signal, logFile: node.logFile });
        this.onUnexpectedExit?.(node, code, signal);
      });
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Waits until every running node is healthy and (clustered) a meta leader is
   * elected. With `requireAll`, a node that has died fails the wait at once.
   */
  async waitReady(timeoutMs = 30_000, requireAll = false): Promise<void> {
    await waitFor(
      `NATS cluster ${this.name} to be ready`,
      async () => {
        const dead = this.nodes.find((n) => n.state === 'dead');
        if (requireAll && dead !== undefined) {
          throw new FatalStartError(`nats-server ${dead.name} exited during start-up: ${lastLines(dead.logFile)}`);
        }
        if (!this.nodes.some((n) => n.state === 'running')) throw new FatalStartError('no nats-server is running');
        for (const node of this.nodes) {
          if (node.state !== 'running') continue;
          const jsz = (await getJson(`http://127.0.0.1:${node.monitorPort}/jsz`)) as Jsz | undefined;
          if (jsz === undefined) return undefined;
          if (this.nodes.length > 1 && !jsz.meta_cluster?.leader) return undefined;
          const health = await fetch(`http://127.0.0.1:${node.monitorPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
          if (!health.ok) return undefined;
        }
        return true;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  /** The meta leader's server name, as seen by the first running node. */
  async metaLeader(): Promise<string | undefined> {
    for (const node of this.nodes) {
      if (node.state !== 'running') continue;
      const jsz = (await getJson(`http://127.0.0.1:${node.monitorPort}/jsz`)) as Jsz | undefined;
      return jsz?.meta_cluster?.leader ?? (this.nodes.length === 1 ? node.name : undefined);
    }
    return undefined;
  }

  /** kill -9 one node. */
  async kill(i: number): Promise<void> {
    const node = this.node(i);
    const child = node.process;
    if (child === undefined || node.state === 'dead') return;
    this.expectedExits.add(child);
    child.kill('SIGKILL');
    await exited(child);
    node.state = 'dead';
  }

  /** SIGSTOP one node: it keeps its sockets but answers nothing. */
  stop(i: number): void {
    const node = this.node(i);
    if (node.state !== 'running' || node.process?.pid === undefined) throw new Error(`node ${node.name} is not running`);
    process.kill(node.process.pid, 'SIGSTOP');
    node.state = 'stopped';
  }

  /** SIGCONT a stopped node. */
  cont(i: number): void {
    const node = this.node(i);
    if (node.state !== 'stopped' || node.process?.pid === undefined) throw new Error(`node ${node.name} is not stopped`);
    process.kill(node.process.pid, 'SIGCONT');
    node.state = 'running';
  }

  /** Starts a dead node again on the same ports and store, and waits until the cluster is ready. */
  async restart(i: number, timeoutMs = 30_000): Promise<void> {
    const node = this.node(i);
    if (node.state !== 'dead') await this.kill(i);
    this.spawnNode(node);
    await this.waitReady(timeoutMs);
  }

  /** Stops every node (SIGTERM, then SIGKILL) and optionally removes the data directory. */
  async shutdown(opts: { removeDir?: string } = {}): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.process;
        if (child === undefined) return;
        this.expectedExits.add(child);
        await terminate(child, 'SIGTERM', 5_000);
        node.state = 'dead';
      }),
    );
    if (opts.removeDir !== undefined) rmSync(opts.removeDir, { recursive: true, force: true });
  }
}

class FatalStartError extends WaitAborted {}

function lastLines(file: string, n = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** The server configuration lines of a NatsServerSecurity. */
export function securityConfig(sec: NatsServerSecurity | undefined, node?: NatsNode): string[] {
  if (sec === undefined) return [];
  const lines: string[] = [];
  const q = (v: string) => JSON.stringify(v);
  const a = sec.auth;
  if (a !== undefined) {
    if ('token' in a) lines.push('authorization {', `  token: ${q(a.token)}`, '}');
    else if ('nkeys' in a) lines.push('authorization {', `  users: [${a.nkeys.map((k) => `{nkey: ${q(k)}}`).join(', ')}]`, '}');
    else lines.push('authorization {', `  user: ${q(a.user)}`, `  password: ${q(a.password)}`, '}');
  }
  if (sec.tls !== undefined) {
    const t = sec.tls;
    lines.push('tls {', `  cert_file: ${q(t.cert)}`, `  key_file: ${q(t.key)}`);
    if (t.ca !== undefined) lines.push(`  ca_file: ${q(t.ca)}`);
    if (t.verify === true) lines.push('  verify: true');
    lines.push('  timeout: 5', '}');
  }
  if (typeof sec.config === 'string') lines.push(sec.config);
  else if (sec.config !== undefined) {
    if (node === undefined) throw new Error('a per-server NATS configuration needs its server');
    lines.push(sec.config(node));
  }
  return lines;
}

function serverConfig(node: NatsNode, all: NatsNode[], clusterName: string, maxPayload: number | undefined, security: NatsServerSecurity | undefined, syncAlways: boolean): string {
  const lines = [
    `server_name: "${node.name}"`,
    `listen: "127.0.0.1:${node.clientPort}"`,
    `http: "127.0.0.1:${node.monitorPort}"`,
    `server_tags: ["node:${node.name}"]`,
    `max_payload: ${maxPayload ?? 8 * 1024 * 1024}`, // 8 MiB: object storage values are up to 1 MiB plus headers (docs/storage.md)
    'jetstream {',
    `  store_dir: ${JSON.stringify(node.storeDir)}`,
    ...(syncAlways ? ['  sync_interval: always'] : []),
    '  max_memory_store: 256MB',
    '  max_file_store: 8GB',
    '}',
    ...securityConfig(security, node),
  ];
  if (all.length > 1) {
    lines.push(
      'cluster {',
      `  name: "${clusterName}"`,
      `  listen: "127.0.0.1:${node.clusterPort}"`,
      `  routes: [${all.filter((n) => n !== node).map((n) => `"nats-route://127.0.0.1:${n.clusterPort}"`).join(', ')}]`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Refuses nats-server builds older than 2.12 (2.9 breaks compare-and-set fencing, nats-server#4320). */
export function checkServerVersion(binary: string): string {
  const out = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(out);
  const v = m === null ? [] : [Number(m[1]), Number(m[2]), Number(m[3])];
  const ok =
    v.length === 3 &&
    ((v[0] as number) > MIN_NATS_SERVER[0] ||
      ((v[0] as number) === MIN_NATS_SERVER[0] && (v[1] as number) >= MIN_NATS_SERVER[1]));
  if (!ok) {
    throw new Error(`${binary} reports "${out}"; Castellan needs nats-server >= ${MIN_NATS_SERVER.join('.')} (run scripts/tools.sh nats)`);
  }
  return out;
}
