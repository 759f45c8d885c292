/**
 * A local Kubernetes control plane: real kube-apiserver, kube-controller-manager,
 * kube-scheduler and etcd started by `kwokctl --runtime binary` from the binaries
 * scripts/tools.sh built, with authorization and admission on, and kwok
 * simulating the nodes (and the kubelet's pod lifecycle) without containers.
 *
 * With `realNodes` > 0 it also starts real nodes (local/nodes/: kubelet,
 * containerd, runc, CNI bridge, kube-proxy) on which pods really run; the API
 * server then advertises the host address of those nodes, so pods reach it
 * through the `kubernetes` Service, and kwok manages only its own fake nodes.
 *
 * Used by `castellan cluster up|down` and by the operator's integration tests.
 * Pods on fake nodes get fake 10.x addresses from kwok: nothing ever dials them.
 */
import { execFile } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isAlive } from '../common/children.ts';
import { sleep, waitFor } from '../common/net.ts';
import { toolPath } from '../common/paths.ts';
import { logger, type Logger } from '../common/logger.ts';
import { hostAddress, kubernetesServiceIp, serviceCidr } from './nodes/layout.ts';
import { RealNodes } from './nodes/real-nodes.ts';

const run = promisify(execFile);

export interface KubeClusterOptions {
  /** kwok cluster name (processes and files are keyed by it). */
  name: string;
  /** kwok's work directory (KWOK_WORKDIR): PKI, etcd data, process logs and pids. */
  workdir: string;
  /** Where the admin kubeconfig is written. */
  kubeconfig: string;
  /** Fake (kwok) nodes to create (default 3, or 0 when realNodes is set). */
  nodes?: number;
  /** Real nodes to start (default 0): pods run on them. Needs root and containerd. */
  realNodes?: number;
  log?: Logger;
}

export class KubeCluster {
  readonly name: string;
  readonly workdir: string;
  readonly kubeconfig: string;
  private readonly log: Logger;
  /** The real nodes (empty when the cluster has only fake ones). */
  readonly real: RealNodes;

  private constructor(opts: KubeClusterOptions) {
    this.name = opts.name;
    this.workdir = opts.workdir;
    this.kubeconfig = opts.kubeconfig;
    this.log = opts.log ?? logger('kube-cluster', { cluster: opts.name });
    this.real = RealNodes.attach(this.realNodesOptions(0));
  }

  private realNodesOptions(count: number) {
    return {
      cluster: this.name,
      workdir: this.workdir,
      kubeconfig: this.kubeconfig,
      caFile: join(this.workdir, 'clusters', this.name, 'pki', 'ca.crt'),
      count,
      log: this.log,
    };
  }

  /** An already created cluster (for `down`, or a second process). */
  static attach(opts: KubeClusterOptions): KubeCluster {
    return new KubeCluster(opts);
  }

  /**
   * Creates and starts the cluster, waits for it and for `nodes` fake nodes to
   * be Ready. A stale cluster of the same name in the same workdir is removed first.
   */
  static async create(opts: KubeClusterOptions): Promise<KubeCluster> {
    const realCount = opts.realNodes ?? 0;
    const fakeCount = opts.nodes ?? (realCount > 0 ? 0 : 3);
    let cluster = new KubeCluster(opts);
    mkdirSync(opts.workdir, { recursive: true });
    mkdirSync(dirname(opts.kubeconfig), { recursive: true });
    await cluster.delete();
    cluster = new KubeCluster(opts);
    const t0 = Date.now();
    const args = [
      'create', 'cluster',
      '--name', opts.name,
      '--runtime', 'binary',
      '--kube-authorization',
      '--kube-admission',
      '--kubeconfig', opts.kubeconfig,
      '--kube-apiserver-binary', toolPath('kube-apiserver'),
      '--kube-controller-manager-binary', toolPath('kube-controller-manager'),
      '--kube-scheduler-binary', toolPath('kube-scheduler'),
      '--etcd-binary', toolPath('etcd'),
      '--kwok-controller-binary', toolPath('kwok'),
      '--wait', '120s',
    ];
    let real: RealNodes | undefined;
    try {
      if (realCount > 0) {
        const config = join(opts.workdir, 'kwokctl-real-nodes.yaml');
        writeFileSync(config, realNodesKwokConfig(join(opts.workdir, 'clusters', opts.name, 'pki')));
        args.push('--config', config);
      }
      await cluster.kwokctl(args, 180_000);
      await cluster.waitServing();
      if (realCount > 0) real = await RealNodes.start(cluster.realNodesOptions(realCount));
      if (fakeCount > 0) await cluster.kwokctl(['scale', 'node', '--replicas', String(fakeCount), '--name', opts.name], 60_000);
      await cluster.kubectl(['wait', '--for=condition=Ready', 'nodes', '--all', '--timeout=180s'], 190_000);
    } catch (err) {
      real?.stopSync();
      await cluster.delete().catch(() => undefined);
      throw err;
    }
    if (real !== undefined) cluster = new KubeCluster(opts);
    cluster.log.info('kubernetes control plane ready', { kubeconfig: opts.kubeconfig, ms: Date.now() - t0 });
    return cluster;
  }

  /**
   * Stops every process of the cluster and removes its files (no-op if absent).
   * Resolves only once the processes are gone (SIGKILL after 20 s).
   */
  async delete(): Promise<void> {
    if (!existsSync(this.workdir)) return;
    // Real nodes first (their kubelets use the API server); the control plane goes even if they left something.
    let leftover: unknown;
    try {
      this.real.stopSync();
    } catch (err) {
      leftover = err;
    }
    const pids = this.pids();
    await this.kwokctl(['delete', 'cluster', '--name', this.name, '--kubeconfig', this.kubeconfig], 60_000);
    const deadline = Date.now() + 20_000;
    while (pids.some(isAlive)) {
      if (Date.now() > deadline) {
        for (const pid of pids.filter(isAlive)) killQuietly(pid, 'SIGKILL');
        this.log.warn('control-plane processes ignored SIGTERM; killed', { pids });
        break;
      }
      await sleep(100);
    }
    if (leftover !== undefined) throw leftover;
  }

  /**
   * Stops the control plane's processes, keeping its state (etcd data, PKI), so
   * that start() brings the same cluster back. Tests use the pair to exercise
   * clients across an API server restart.
   */
  async stop(): Promise<void> {
    await this.kwokctl(['stop', 'cluster', '--name', this.name], 120_000);
  }

  /**
   * Starts a stopped control plane and resolves only once it serves what a
   * caller does next (see waitServing): a restarted kube-apiserver answers
   * `429 storage is (re)initializing` and `503 … before all known HTTP paths have
   * been installed` for a while after its port opens, and /readyz alone does not
   * cover the custom resources' paths.
   */
  async start(opts: { resources?: string[]; timeoutMs?: number } = {}): Promise<void> {
    await this.kwokctl(['start', 'cluster', '--name', this.name], 180_000);
    await this.waitServing(opts);
  }

  /** stop() then start(). */
  async restart(opts: { resources?: string[]; timeoutMs?: number } = {}): Promise<void> {
    await this.stop();
    await this.start(opts);
  }

  /**
   * Waits until the API server is ready for work: /readyz is ok, discovery of
   * every API group succeeds, and every installed CRD plus each of `resources`
   * (kubectl resource names, e.g. `statefulsets.apps`) can be listed, that is its
   * HTTP path is installed and its storage initialised.
   */
  async waitServing(opts: { resources?: string[]; timeoutMs?: number } = {}): Promise<void> {
    const t0 = Date.now();
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const request = ['--request-timeout=5s'];
    await waitFor('kube-apiserver /readyz', async () => ((await this.kubectl(['get', '--raw', '/readyz', ...request], 10_000)).trim() === 'ok' ? true : undefined), {
      timeoutMs,
      intervalMs: 250,
    });
    const crds = await waitFor('the CRD list', async () => (await this.kubectl(['get', 'crd', '-o', 'name', ...request], 10_000)).split('\n').filter(Boolean), {
      timeoutMs,
      intervalMs: 250,
    });
    const resources = [...(opts.resources ?? []), ...crds.map((c) => c.replace(/^.*\//, ''))];
    await waitFor('API discovery of every group', async () => ((await this.kubectl(['api-resources', '-o', 'name', ...request], 15_000)) ? true : undefined), {
      timeoutMs,
      intervalMs: 250,
    });
    for (const r of resources) {
      await waitFor(`the API server to serve ${r}`, async () => (await this.kubectl(['get', r, '--all-namespaces', '-o', 'name', ...request], 10_000), true), {
        timeoutMs,
        intervalMs: 250,
      });
    }
    this.log.info('kubernetes API serving', { resources, ms: Date.now() - t0 });
  }

  /** Process ids of the cluster's components, from kwokctl's pid files. */
  pids(): number[] {
    const dir = join(this.workdir, 'clusters', this.name, 'pids');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => Number(readFileSync(join(dir, f), 'utf8').trim()))
      .filter((p) => Number.isInteger(p) && p > 0);
  }

  /** Synchronous delete, for process-exit hooks. */
  deleteSync(): void {
    if (!existsSync(this.workdir)) return;
    try {
      this.real.stopSync();
    } finally {
      this.deleteControlPlaneSync();
    }
  }

  private deleteControlPlaneSync(): void {
    execFileSync(toolPath('kwokctl'), ['delete', 'cluster', '--name', this.name, '--kubeconfig', this.kubeconfig], {
      env: this.env(),
      stdio: 'ignore',
      timeout: 60_000,
    });
  }

  /** Runs kubectl against this cluster; resolves with stdout. */
  async kubectl(args: string[], timeoutMs = 30_000): Promise<string> {
    const { stdout } = await run(toolPath('kubectl'), ['--kubeconfig', this.kubeconfig, ...args], {
      env: this.env(),
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  }

  private async kwokctl(args: string[], timeoutMs: number): Promise<string> {
    try {
      const { stdout } = await run(toolPath('kwokctl'), args, { env: this.env(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`kwokctl ${args.slice(0, 2).join(' ')} failed: ${(e.stderr ?? '').trim().split('\n').slice(-8).join('\n') || e.message}`, {
        cause: err,
      });
    }
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, KWOK_WORKDIR: this.workdir, KUBECONFIG: this.kubeconfig };
  }
}

/**
 * kwokctl settings for a cluster with real nodes: the API server advertises the
 * nodes' host address (the `kubernetes` Service's endpoint, reachable from pods)
 * with Service addresses from 10.96.0.0/16 and both in its certificate, talks to
 * the kubelets with the admin client certificate (logs, exec), and the
 * kwok controller manages only nodes annotated as fake (kwokctl scale node).
 */
function realNodesKwokConfig(pki: string): string {
  return `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: ["${hostAddress}", "${kubernetesServiceIp}"]
componentsPatches:
  - name: kube-apiserver
    extraArgs:
      - {key: advertise-address, value: "${hostAddress}"}
      - {key: service-cluster-ip-range, value: "${serviceCidr}"}
      - {key: kubelet-client-certificate, value: "${pki}/admin.crt"}
      - {key: kubelet-client-key, value: "${pki}/admin.key"}
      - {key: kubelet-preferred-address-types, value: "InternalIP"}
  - name: kube-controller-manager
    extraArgs:
      - {key: service-cluster-ip-range, value: "${serviceCidr}"}
  - name: kwok-controller
    extraArgs:
      - {key: manage-all-nodes, value: "false", override: true}
      - {key: manage-nodes-with-annotation-selector, value: "kwok.x-k8s.io/node=fake"}
`;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
