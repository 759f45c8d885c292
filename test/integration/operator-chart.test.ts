/**
 * The Helm chart against a real API server (authorization on):
 * - every rendered manifest is accepted by a server-side dry run;
 * - `helm install` brings the operator Deployment up (kwok runs its pods);
 * - the chart's ServiceAccount can do what the operator needs — an operator
 *   running with that account's token (leader election in the release
 *   namespace) reconciles a DurableObject end to end — and nothing more
 *   (no Secrets, no pods writes, no deleting Services, no other Leases).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/logger.ts';
import { waitFor } from '../../common/net.ts';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { installCrds, kwokToleration, startKube, type TestKube } from '../harness/kube.ts';
import { startNats, type TestNats } from '../harness/nats.ts';

const run = promisify(execFile);
const chart = join(projectRoot, 'charts', 'castellan');
const release = 'castellan';
const ns = 'castellan-system';
const sa = 'system:serviceaccount:castellan-system:castellan';

describe('Helm chart on a real API server', () => {
  let kube: TestKube;
  let nats: TestNats;
  let operator: Operator | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'castellan-chart-'));

  const helm = async (...args: string[]): Promise<string> => {
    const { stdout } = await run(toolPath('helm'), args, {
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, KUBECONFIG: kube.kubeconfig, HELM_CONFIG_HOME: join(dir, 'helm-config'), HELM_CACHE_HOME: join(dir, 'helm-cache'), HELM_DATA_HOME: join(dir, 'helm-data') },
    });
    return stdout;
  };

  beforeAll(async () => {
    // Both in parallel; whichever started is assigned (and disposed in afterAll) even if the other failed.
    const [k, n] = await Promise.allSettled([startKube(1), startNats(1)]);
    if (k.status === 'fulfilled') kube = k.value;
    if (n.status === 'fulfilled') nats = n.value;
    if (k.status === 'rejected') throw k.reason;
    if (n.status === 'rejected') throw n.reason;
    await installCrds(kube);
    await kube.cluster.kubectl(['create', 'namespace', ns]);
  }, 240_000);

  afterAll(async () => {
    await operator?.stop();
    await nats?.dispose();
    await kube?.dispose();
  }, 120_000);

  it('renders manifests the API server accepts (server-side dry run)', async () => {
    const rendered = await helm('template', release, chart, '--namespace', ns, '--kube-version', '1.34.4');
    const file = join(dir, 'rendered.yaml');
    writeFileSync(file, rendered);
    const out = await kube.cluster.kubectl(['apply', '--dry-run=server', '-f', file]);
    for (const kind of ['deployment.apps', 'serviceaccount', 'clusterrole.rbac.authorization.k8s.io', 'role.rbac.authorization.k8s.io', 'service', 'poddisruptionbudget.policy']) {
      expect(out).toContain(kind);
    }
    expect(out).toMatch(/\(server dry run\)/);
  }, 120_000);

  it('helm install brings the operator Deployment up', async () => {
    await helm(
      'install', release, chart, '--namespace', ns, '--wait', '--timeout', '120s',
      '--set', `nats.url=${nats.urls.join('\\,')}`,
      '--set', `tolerations[0].key=${kwokToleration.key}`, '--set', 'tolerations[0].operator=Exists', '--set', 'tolerations[0].effect=NoSchedule',
    );
    const apps = kube.kc.makeApiClient(k8s.AppsV1Api);
    const dep = await apps.readNamespacedDeployment({ name: release, namespace: ns });
    expect(dep.status?.availableReplicas).toBe(2);
    const crds = await kube.cluster.kubectl(['get', 'crd', '-o', 'name']);
    expect(crds).toMatch(/durableobjects\.castellan\.dev/);
  }, 180_000);

  it("grants the ServiceAccount what the operator needs and nothing more", async () => {
    const can = async (verb: string, resource: string, namespace = 'default', sub?: string): Promise<boolean> => {
      const args = ['auth', 'can-i', verb, resource, '--as', sa, '-n', namespace, ...(sub === undefined ? [] : ['--subresource', sub])];
      return kube.cluster.kubectl(args).then(
        () => true,
        () => false,
      );
    };
    for (const [verb, res, sub] of [
      ['watch', 'durableobjects.castellan.dev'],
      ['patch', 'replicatedqueues.castellan.dev'],
      ['patch', 'durableobjects.castellan.dev', 'status'],
      ['create', 'statefulsets.apps'],
      ['patch', 'services'],
      ['create', 'poddisruptionbudgets.policy'],
      ['create', 'events'],
    ] as [string, string, string?][]) {
      expect([verb, res, sub, await can(verb, res, 'default', sub)]).toEqual([verb, res, sub, true]);
    }
    for (const [verb, res] of [
      ['get', 'secrets'],
      ['list', 'secrets'],
      ['create', 'pods'],
      ['delete', 'services'],
      ['delete', 'durableobjects.castellan.dev'],
      ['create', 'deployments.apps'],
      ['update', 'leases.coordination.k8s.io'],
    ] as [string, string][]) {
      expect([verb, res, await can(verb, res)]).toEqual([verb, res, false]);
    }
    expect(await can('update', 'leases.coordination.k8s.io/castellan', ns)).toBe(true);
    expect(await can('update', 'leases.coordination.k8s.io/other', ns)).toBe(false);
  }, 120_000);

  it('runs the operator with only the ServiceAccount token: it reconciles a DurableObject', async () => {
    // Scale the installed (image-less, kwok-simulated) operators down so this one holds the Lease.
    await kube.cluster.kubectl(['-n', ns, 'scale', 'deployment', release, '--replicas=0']);
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    const token = await core.createNamespacedServiceAccountToken({ name: 'castellan', namespace: ns, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
    const cluster = kube.kc.getCurrentCluster();
    if (cluster === null) throw new Error('no current cluster');
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [cluster],
      users: [{ name: 'sa', token: token.status?.token }],
      contexts: [{ name: 'sa', cluster: cluster.name, user: 'sa' }],
      currentContext: 'sa',
    });
    const config = loadOperatorConfig(
      {
        identity: 'sa-operator',
        nats: { urls: nats.urls },
        http: { port: 0 },
        leaderElection: { enabled: true, namespace: ns, lease: 'castellan', leaseDuration: '4s', renewDeadline: '3s', retryPeriod: '500ms' },
      },
      {},
    );
    operator = new Operator({ config, kc, log: logger('test.sa-operator') });
    await operator.start();
    await waitFor('the operator to lead', async () => (operator?.isLeader() ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });

    const custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects',
      body: {
        apiVersion: 'castellan.dev/v1alpha1', kind: 'DurableObject', metadata: { name: 'rbac' },
        spec: { appPort: 8080, replicas: 1, storage: { replicas: 1 }, deletionPolicy: 'Delete', template: { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }], tolerations: [kwokToleration] } } },
      },
    });
    const ready = await waitFor(
      'the DurableObject to be Ready',
      async () => {
        const cr = (await custom.getNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects', name: 'rbac' })) as {
          status?: { conditions?: { type: string; status: string }[]; observedGeneration?: number };
        };
        return cr.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? cr : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    expect(ready.status?.conditions?.find((c) => c.type === 'Degraded')?.status).toBe('False');
    const events = await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=rbac' });
    expect(events.items.map((e) => e.reason)).toContain('Reconciled');
    // Deletion with policy Delete needs the StatefulSet delete and the finalizer patch: both granted.
    await custom.deleteNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects', name: 'rbac' });
    await waitFor(
      'the DurableObject to be gone',
      async () =>
        custom.getNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects', name: 'rbac' }).then(
          () => undefined,
          (err: unknown) => ((err as { code?: number }).code === 404 ? true : undefined),
        ),
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  }, 240_000);
});
