/**
 * Test harness: a real Kubernetes control plane (kube-apiserver, controller-manager,
 * scheduler, etcd; kwok fake nodes) per test file, in a temporary work dir.
 * The launcher is local/kube-cluster.ts, the same one `castellan cluster up` uses.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { spawnOwned, terminate } from '../../common/children.ts';
import { freePorts } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { KubeCluster } from '../../local/kube-cluster.ts';

const projectRootDir = (): string => projectRoot;

export interface TestKube {
  cluster: KubeCluster;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  dispose(): Promise<void>;
}

/** A control plane with `nodes` kwok nodes and `realNodes` real ones (local/nodes/; needs root and containerd). */
export async function startKube(nodes = 3, realNodes = 0): Promise<TestKube> {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-kube-'));
  const name = `t${process.pid}`;
  const cluster = await KubeCluster.create({ name, workdir: join(dir, 'kwok'), kubeconfig: join(dir, 'kubeconfig'), nodes, realNodes });
  const onExit = () => cluster.deleteSync();
  process.once('exit', onExit);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  return {
    cluster,
    kubeconfig: cluster.kubeconfig,
    kc,
    async dispose() {
      process.off('exit', onExit);
      await cluster.delete();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A projected-style token of ServiceAccount `namespace/name` (TokenRequest, 1 h), written to a file in `dir`; returns the file. */
export async function serviceAccountToken(kube: TestKube, dir: string, namespace: string, name: string, audiences = ['castellan']): Promise<string> {
  const core = kube.kc.makeApiClient(k8s.CoreV1Api);
  const res = await core.createNamespacedServiceAccountToken({ name, namespace, body: { spec: { audiences, expirationSeconds: 3600 } } });
  const token = res.status?.token;
  if (token === undefined) throw new Error(`no token issued for ${namespace}/${name}`);
  const file = join(dir, `${namespace}-${name}-${audiences.join('_')}.token`);
  writeFileSync(file, token, { mode: 0o600 });
  return file;
}

/** Applies the project's CRDs (crds/) and waits until both are Established. */
export async function installCrds(kube: TestKube): Promise<void> {
  await kube.cluster.kubectl(['apply', '--server-side', '--field-manager=castellan-test', '-f', join(projectRoot, 'crds')]);
  await kube.cluster.kubectl(
    ['wait', '--for=condition=Established', '--timeout=60s', 'crd/durableobjects.castellan.dev', 'crd/replicatedqueues.castellan.dev'],
    70_000,
  );
  await kube.cluster.waitServing();
}

/** Tolerates kwok's fake-node taint, so test pods schedule onto the fake nodes. */
export const kwokToleration = { key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' };

// ---------------------------------------------------------------------------------------------
// A stand-in for the kubelet: kwok marks pods Running but runs no container. For end-to-end
// tests, this starts the real processes of each Running Castellan pod on this machine — the
// sidecar (`castellan sidecar` with the env of its container spec, downward-API fields
// resolved) and, for object hosts, the app (a local command chosen by the container image) —
// on free loopback ports (CASTELLAN_HTTP_PORT / CASTELLAN_APP_PORT / PORT are remapped; pod
// IPs are never used). A pod that is deleted or replaced gets its processes killed.

export interface StandInOptions {
  namespace: string;
  /** Local command for an app container image, e.g. {'castellan.test/counter': ['examples/counter/app.js']}. */
  apps: Record<string, string[]>;
  /** Extra env for every sidecar (e.g. a short CASTELLAN_LEASE_TTL). */
  sidecarEnv?: Record<string, string>;
  logDir: string;
}

interface PodProcs {
  uid: string;
  children: ChildProcess[];
  sidecarUrl: string;
}

export class KubeletStandIn {
  private readonly kube: TestKube;
  private readonly opts: StandInOptions;
  private readonly pods = new Map<string, PodProcs>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;

  constructor(kube: TestKube, opts: StandInOptions) {
    this.kube = kube;
    this.opts = opts;
  }

  start(): void {
    this.timer = setInterval(() => void this.sync(), 500);
  }

  /** The loopback URL of a running pod's sidecar. */
  sidecarUrl(pod: string): string | undefined {
    return this.pods.get(pod)?.sidecarUrl;
  }

  /** The uid of the pod whose processes run under that name (changes when the pod is replaced). */
  podUid(pod: string): string | undefined {
    return this.pods.get(pod)?.uid;
  }

  running(): string[] {
    return [...this.pods.keys()].sort();
  }

  private async sync(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      const core = this.kube.kc.makeApiClient(k8s.CoreV1Api);
      const list = await core.listNamespacedPod({ namespace: this.opts.namespace, labelSelector: 'app.kubernetes.io/managed-by=castellan-operator' });
      const live = new Map<string, k8s.V1Pod>();
      for (const p of list.items) {
        const running = p.status?.phase === 'Running' && p.metadata?.deletionTimestamp === undefined;
        if (running) live.set(p.metadata?.name ?? '', p);
      }
      for (const [name, procs] of this.pods) {
        const p = live.get(name);
        if (p === undefined || p.metadata?.uid !== procs.uid) {
          this.pods.delete(name);
          await Promise.all(procs.children.map((c) => terminate(c, 'SIGTERM', 3_000)));
        }
      }
      for (const [name, p] of live) if (!this.pods.has(name)) await this.run(p);
    } catch {
      // the API server may be busy; the next tick retries
    } finally {
      this.busy = false;
    }
  }

  private async run(pod: k8s.V1Pod): Promise<void> {
    const name = pod.metadata?.name ?? '';
    const spec = pod.spec;
    if (spec === undefined) return;
    const sidecar = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === 'castellan-sidecar');
    if (sidecar === undefined) return;
    const resolve = (env: k8s.V1EnvVar[] | undefined): Record<string, string> => {
      const out: Record<string, string> = {};
      for (const e of env ?? []) {
        const path = e.valueFrom?.fieldRef?.fieldPath;
        if (e.value !== undefined) out[e.name] = e.value;
        else if (path === 'metadata.name') out[e.name] = name;
        else if (path === 'metadata.namespace') out[e.name] = pod.metadata?.namespace ?? '';
      }
      return out;
    };
    const [sidecarPort, appPort, adminPort] = await freePorts(3);
    const children: ChildProcess[] = [];
    const sidecarUrl = `http://127.0.0.1:${sidecarPort}`;
    const env: Record<string, string> = {
      ...resolve(sidecar.env),
      CASTELLAN_HTTP_PORT: String(sidecarPort),
      // the admin listener is on the pod IP in a real pod; here on loopback, on a port of its own
      CASTELLAN_ADMIN_PORT: String(adminPort),
      CASTELLAN_ADMIN_HOST: '127.0.0.1',
      ...(this.opts.sidecarEnv ?? {}),
    };
    if (env.CASTELLAN_ROLE === 'object-host') {
      env.CASTELLAN_APP_PORT = String(appPort);
      for (const c of spec.containers) {
        const script = this.opts.apps[c.image ?? ''];
        if (script === undefined) continue;
        const appEnv = { ...resolve(c.env), PORT: String(appPort), CASTELLAN_SIDECAR_URL: sidecarUrl };
        children.push(this.spawn(`${name}-${c.name}`, script, appEnv));
      }
    }
    children.push(this.spawn(`${name}-sidecar`, [join(projectRootDir(), 'cli', 'main.ts'), 'sidecar'], env));
    this.pods.set(name, { uid: pod.metadata?.uid ?? '', children, sidecarUrl });
  }

  private spawn(name: string, args: string[], env: Record<string, string>): ChildProcess {
    const fd = openSync(join(this.opts.logDir, `${name}.log`), 'a');
    try {
      return spawnOwned(process.execPath, ['--disable-warning=ExperimentalWarning', ...args], {
        stdio: ['ignore', fd, fd],
        cwd: projectRootDir(),
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', CASTELLAN_LOG_LEVEL: 'info', ...env },
      });
    } finally {
      closeSync(fd);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 50));
    const all = [...this.pods.values()].flatMap((p) => p.children);
    this.pods.clear();
    await Promise.all(all.map((c) => terminate(c, 'SIGTERM', 3_000)));
  }
}
