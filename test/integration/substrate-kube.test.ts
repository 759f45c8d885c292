/**
 * Proves the Kubernetes substrate is real: a control plane with authorization
 * on schedules a StatefulSet's pods onto kwok's fake nodes (kwok plays the
 * kubelet and marks them Running), and a ServiceAccount with no RBAC is denied.
 * Nothing here dials a pod IP: kwok's 10.x addresses do not exist.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { waitFor } from '../../common/net.ts';
import { startKube, type TestKube } from '../harness/kube.ts';

describe('Kubernetes control plane with kwok nodes', () => {
  let kube: TestKube;

  beforeAll(async () => {
    kube = await startKube(3);
  }, 240_000);

  afterAll(async () => {
    await kube?.dispose();
  }, 90_000);

  it('has three Ready fake nodes', async () => {
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    const nodes = await core.listNode();
    expect(nodes.items).toHaveLength(3);
    for (const n of nodes.items) {
      expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    }
  });

  it('schedules a StatefulSet onto fake nodes and runs its pods', async () => {
    const apps = kube.kc.makeApiClient(k8s.AppsV1Api);
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    const labels = { app: 'substrate' };
    await apps.createNamespacedStatefulSet({
      namespace: 'default',
      body: {
        metadata: { name: 'substrate' },
        spec: {
          replicas: 3,
          serviceName: 'substrate',
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              containers: [{ name: 'app', image: 'example.invalid/app:1' }],
              tolerations: [{ key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' }],
            },
          },
        },
      },
    });
    const sts = await waitFor(
      'StatefulSet to have 3 ready replicas',
      async () => {
        const s = await apps.readNamespacedStatefulSet({ name: 'substrate', namespace: 'default' });
        return s.status?.readyReplicas === 3 ? s : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(sts.status?.replicas).toBe(3);
    const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=substrate' });
    expect(pods.items.map((p) => p.metadata?.name).sort()).toEqual(['substrate-0', 'substrate-1', 'substrate-2']);
    const nodeNames = new Set((await core.listNode()).items.map((n) => n.metadata?.name));
    for (const p of pods.items) {
      expect(p.status?.phase).toBe('Running');
      expect(nodeNames.has(p.spec?.nodeName)).toBe(true);
    }
  }, 120_000);

  it('denies a ServiceAccount that has no permissions (authorization is on)', async () => {
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'nobody' } } });
    const token = await core.createNamespacedServiceAccountToken({
      name: 'nobody',
      namespace: 'default',
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const cluster = kube.kc.getCurrentCluster();
    if (cluster === null) throw new Error('kubeconfig has no current cluster');
    const asNobody = new k8s.KubeConfig();
    asNobody.loadFromOptions({
      clusters: [cluster],
      users: [{ name: 'nobody', token: token.status?.token }],
      contexts: [{ name: 'nobody', cluster: cluster.name, user: 'nobody' }],
      currentContext: 'nobody',
    });
    const denied = asNobody.makeApiClient(k8s.CoreV1Api);
    await expect(denied.listNamespacedPod({ namespace: 'default' })).rejects.toMatchObject({ code: 403 });
    // The same request as the admin succeeds: the 403 is authorization, not a broken client.
    await expect(core.listNamespacedPod({ namespace: 'default' })).resolves.toBeDefined();
  }, 60_000);
});
