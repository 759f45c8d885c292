/**
 * Real local nodes for the control plane of local/kube-cluster.ts: per node a
 * containerd (CRI v1, runc, CNI bridge) and a kubelet, plus one kube-proxy for
 * the machine's network namespace, which all nodes share (local/nodes/layout.ts).
 * Pods really run: images come from `ctr images import` (no registry), the
 * sandbox image is built locally.
 *
 * `start` undoes a half-finished start. `stopSync` stops the kubelets first (so
 * nothing restarts containers), then every container and shim of each node's
 * containerd, then containerd and kube-proxy, and then removes what the nodes
 * left on the machine (local/nodes/host.ts); `leftovers` proves it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePorts, sleep } from '../../common/net.ts';
import { toolPath } from '../../common/paths.ts';
import type { Logger } from '../../common/logger.ts';
import { buildPauseImage } from '../image/build.ts';
import { cniConfig, containerdConfig, kubeletConfig, kubeProxyConfig } from './configs.ts';
import { createCgroupRoot, leftovers, type Leftovers, prepareHostNetwork, teardownHost } from './host.ts';
import { hostAddress, kubeProxyConfigPath, maxRealNodes, type NodeLayout, nodeLayout, pauseImage, pidDir } from './layout.ts';
import { isAlive } from '../../common/children.ts';
import { processesMatching, readPids, removePidFile, startDetached, stopSync, withDescendants } from './processes.ts';

const run = promisify(execFile);

export interface RealNodesOptions {
  cluster: string;
  workdir: string;
  /** Admin kubeconfig of the control plane (the kubelets and kube-proxy use it). */
  kubeconfig: string;
  /** The cluster CA (the kubelets accept the API server's client certificate with it). */
  caFile: string;
  count: number;
  log: Logger;
}

/** What real nodes need on this machine; a readable error naming what is missing. */
export function checkRealNodePrerequisites(): void {
  if (process.getuid?.() !== 0) throw new Error('real nodes need root (containerd, kubelet, bridges and mounts); run as root or use --fake-nodes only');
  const missing: string[] = [];
  for (const cmd of ['containerd', 'containerd-shim-runc-v2', 'runc', 'ctr', 'iptables', 'ip', 'mount']) {
    try {
      toolPath(cmd);
    } catch {
      missing.push(cmd);
    }
  }
  if (!existsSync('/usr/lib/cni/bridge') || !existsSync('/usr/lib/cni/host-local') || !existsSync('/usr/lib/cni/loopback')) missing.push('CNI plugins (/usr/lib/cni)');
  if (missing.length > 0) throw new Error(`real nodes need ${missing.join(', ')}: run "sudo scripts/tools.sh node-runtime"`);
  for (const t of ['kubelet', 'kube-proxy', 'pause']) toolPath(t); // throws "run npm run setup"
}

export class RealNodes {
  readonly nodes: NodeLayout[];
  private readonly opts: RealNodesOptions;

  private constructor(opts: RealNodesOptions, count: number) {
    this.opts = opts;
    this.nodes = Array.from({ length: count }, (_, i) => nodeLayout(opts.workdir, opts.cluster, i));
  }

  /** The nodes of a cluster started earlier (possibly by another process), found by their files. */
  static attach(opts: RealNodesOptions): RealNodes {
    let count = 0;
    while (count < maxRealNodes && existsSync(nodeLayout(opts.workdir, opts.cluster, count).dir)) count++;
    return new RealNodes(opts, count);
  }

  static async start(opts: RealNodesOptions): Promise<RealNodes> {
    if (opts.count > maxRealNodes) throw new Error(`at most ${maxRealNodes} real nodes`);
    checkRealNodePrerequisites();
    const nodes = new RealNodes(opts, opts.count);
    try {
      await nodes.startAll();
    } catch (err) {
      nodes.stopSync();
      throw err;
    }
    return nodes;
  }

  private async startAll(): Promise<void> {
    const { workdir, log } = this.opts;
    const t0 = Date.now();
    prepareHostNetwork(workdir);
    const pause = await buildPauseImage(join(workdir, 'nodes', 'images'), pauseImage);
    await Promise.all(this.nodes.map((n) => this.startNode(n, pause.archive)));
    const [healthz, metrics] = await freePorts(2);
    writeFileSync(
      kubeProxyConfigPath(workdir),
      kubeProxyConfig({ kubeconfig: this.opts.kubeconfig, hostname: this.nodes[0]?.name ?? 'localhost', healthzPort: healthz ?? 0, metricsPort: metrics ?? 0 }),
    );
    startDetached({
      name: 'kube-proxy',
      command: toolPath('kube-proxy'),
      args: [`--config=${kubeProxyConfigPath(workdir)}`, '--v=1'],
      pidDir: pidDir(workdir),
      logDir: join(workdir, 'logs'),
    });
    await this.waitReady(240_000);
    log.info('real nodes ready', { nodes: this.nodes.map((n) => n.name), ms: Date.now() - t0 });
  }

  private async startNode(n: NodeLayout, pauseArchive: string): Promise<void> {
    for (const d of [n.dir, n.containerdRoot, n.containerdState, n.kubeletRoot, n.kubeletCertDir, n.podLogsDir, n.cniConfDir, n.ipamDir, n.logDir]) mkdirSync(d, { recursive: true });
    writeFileSync(n.containerdConfig, containerdConfig(n));
    writeFileSync(join(n.cniConfDir, '10-castellan.conflist'), cniConfig(n));
    writeFileSync(n.kubeletConfig, kubeletConfig(n, this.opts.caFile));
    createCgroupRoot(n.cgroupRoot);
    const env = { ...process.env, PATH: `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` };
    startDetached({ name: `containerd-${n.index}`, command: toolPath('containerd'), args: ['--config', n.containerdConfig], pidDir: pidDir(this.opts.workdir), logDir: n.logDir, env });
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await run(toolPath('ctr'), ['--address', n.containerdSocket, 'version'], { timeout: 10_000 });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`containerd of ${n.name} did not start (see ${join(n.logDir, `containerd-${n.index}.log`)})`, { cause: err });
        await sleep(200);
      }
    }
    await importImage(n, pauseArchive);
    startDetached({
      name: `kubelet-${n.index}`,
      command: toolPath('kubelet'),
      args: [
        `--config=${n.kubeletConfig}`,
        `--kubeconfig=${this.opts.kubeconfig}`,
        `--root-dir=${n.kubeletRoot}`,
        `--cert-dir=${n.kubeletCertDir}`,
        `--hostname-override=${n.name}`,
        `--node-ip=${hostAddress}`,
        `--node-labels=castellan.dev/local-node=real`,
        '--v=1',
      ],
      pidDir: pidDir(this.opts.workdir),
      logDir: n.logDir,
      env,
    });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ready = await Promise.all(this.nodes.map((n) => this.nodeReady(n.name)));
      if (ready.every(Boolean)) return;
      const dead = [...readPids(pidDir(this.opts.workdir))].filter(([, pid]) => !isAlive(pid)).map(([name]) => name);
      if (dead.length > 0) throw new Error(`real node processes exited: ${dead.join(', ')} (logs in ${join(this.opts.workdir, 'logs')})`);
      if (Date.now() > deadline) throw new Error(`real nodes not Ready after ${timeoutMs / 1000}s (logs in ${join(this.opts.workdir, 'logs')})`);
      await sleep(1_000);
    }
  }

  private async nodeReady(name: string): Promise<boolean> {
    try {
      const { stdout } = await run(toolPath('kubectl'), ['--kubeconfig', this.opts.kubeconfig, 'get', 'node', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'], {
        timeout: 15_000,
      });
      return stdout.trim() === 'True';
    } catch {
      return false;
    }
  }

  /** Imports an image archive (`docker save` format) into every node's containerd. */
  async importImage(archive: string): Promise<void> {
    await Promise.all(this.nodes.map((n) => importImage(n, archive)));
  }

  /** Stops every process of the nodes and removes what they left on the machine. Idempotent. */
  stopSync(): void {
    const dir = pidDir(this.opts.workdir);
    const pids = readPids(dir);
    const stop = (names: string[], graceMs: number) => {
      const list = names.map((n) => pids.get(n)).filter((p): p is number => p !== undefined && isAlive(p));
      if (list.length > 0) stopSync(list, graceMs);
    };
    stop(this.nodes.map((n) => `kubelet-${n.index}`), 10_000);
    // containers and shims: everything started under a node's containerd socket
    for (const n of this.nodes) {
      const shims = processesMatching(n.containerdSocket).filter((p) => p !== pids.get(`containerd-${n.index}`));
      const tree = withDescendants(shims);
      if (tree.length > 0) stopSync(tree, 2_000);
    }
    stop(this.nodes.map((n) => `containerd-${n.index}`), 10_000);
    stop(['kube-proxy'], 5_000);
    teardownHost(this.opts.workdir, this.nodes, () => this.kubeProxyCleanup());
    for (const name of pids.keys()) removePidFile(dir, name);
    const left = this.leftovers();
    const count = left.mounts.length + left.links.length + left.netns.length + left.cgroups.length + left.iptables.length;
    // Never delete a directory something is still mounted under (a hostPath bind mount would take host files with it).
    if (count > 0) throw new Error(`real nodes left behind: ${JSON.stringify(left)}`);
    rmSync(join(this.opts.workdir, 'nodes'), { recursive: true, force: true });
  }

  private kubeProxyCleanup(): void {
    if (!existsSync(kubeProxyConfigPath(this.opts.workdir))) return;
    try {
      execFileSync(toolPath('kube-proxy'), ['--cleanup', `--config=${kubeProxyConfigPath(this.opts.workdir)}`], { stdio: 'ignore', timeout: 60_000 });
    } catch (err) {
      this.opts.log.warn('kube-proxy --cleanup failed', { error: String(err) });
    }
  }

  leftovers(): Leftovers {
    return leftovers(this.opts.workdir, this.nodes);
  }
}

async function importImage(n: NodeLayout, archive: string): Promise<void> {
  await run(toolPath('ctr'), ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
}
