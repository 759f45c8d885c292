/**
 * Test harness: a real Kubernetes control plane (kube-apiserver, controller-manager,
 * scheduler, etcd; kwok fake nodes) per test file, in a temporary work dir.
 * The launcher is local/kube-cluster.ts, the same one `castellan cluster up` uses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeCluster } from '../../local/kube-cluster.ts';

export interface TestKube {
  cluster: KubeCluster;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  dispose(): Promise<void>;
}

export async function startKube(nodes = 3): Promise<TestKube> {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-kube-'));
  const name = `t${process.pid}`;
  const cluster = await KubeCluster.create({ name, workdir: join(dir, 'kwok'), kubeconfig: join(dir, 'kubeconfig'), nodes });
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

/** Applies the project's CRDs (crds/) and waits until both are Established. */
export async function installCrds(kube: TestKube): Promise<void> {
  const { projectRoot } = await import('../../common/paths.ts');
  await kube.cluster.kubectl(['apply', '--server-side', '--field-manager=castellan-test', '-f', join(projectRoot, 'crds')]);
  await kube.cluster.kubectl(
    ['wait', '--for=condition=Established', '--timeout=60s', 'crd/durableobjects.castellan.dev', 'crd/replicatedqueues.castellan.dev'],
    70_000,
  );
}

/** Tolerates kwok's fake-node taint, so test pods schedule onto the fake nodes. */
export const kwokToleration = { key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' };
