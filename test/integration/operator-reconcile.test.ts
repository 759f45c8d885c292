/**
 * The operator against a real control plane (kube-apiserver, controller-manager,
 * scheduler, etcd; kwok nodes make pods Running and Ready) and a real 3-node
 * NATS JetStream cluster: DurableObjects and ReplicatedQueues become
 * StatefulSets with the sidecar, Services, PDBs and ConfigMaps owned by them,
 * JetStream assets appear, status reports observedGeneration and conditions,
 * spec changes roll the pods (config hash), drift is repaired, and deletion
 * honours deletionPolicy. The operator runs in this process; nothing dials a pod IP.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { waitFor } from '../../common/net.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { startKube, installCrds, kwokToleration, type TestKube } from '../harness/kube.ts';
import { startNats, type TestNats } from '../harness/nats.ts';

const group = 'castellan.dev';
const version = 'v1alpha1';
const ns = 'default';

type Obj = Record<string, unknown>;
interface Cond {
  type: string;
  status: string;
  reason: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}
interface CR {
  metadata: { name: string; uid: string; generation: number; finalizers?: string[] };
  spec: Obj;
  status?: { observedGeneration?: number; conditions?: Cond[]; replicas?: number; readyReplicas?: number; readyHosts?: number; hosts?: number };
}

const appTemplate = { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }], tolerations: [kwokToleration] } };

describe('operator reconcile on a real cluster', () => {
  let kube: TestKube;
  let nats: TestNats;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let operator: Operator;
  let custom: k8s.CustomObjectsApi;
  let apps: k8s.AppsV1Api;
  let core: k8s.CoreV1Api;
  let policy: k8s.PolicyV1Api;

  beforeAll(async () => {
    // Both in parallel; whichever started is assigned (and disposed in afterAll) even if the other failed.
    const [k, n] = await Promise.allSettled([startKube(1), startNats(3)]);
    if (k.status === 'fulfilled') kube = k.value;
    if (n.status === 'fulfilled') nats = n.value;
    if (k.status === 'rejected') throw k.reason;
    if (n.status === 'rejected') throw n.reason;
    await installCrds(kube);
    nc = await nats.connect();
    jsm = await jetstreamManager(nc, { timeout: 15_000 });
    custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    apps = kube.kc.makeApiClient(k8s.AppsV1Api);
    core = kube.kc.makeApiClient(k8s.CoreV1Api);
    policy = kube.kc.makeApiClient(k8s.PolicyV1Api);
    const config = loadOperatorConfig(
      {
        identity: 'test-operator',
        nats: { urls: nats.urls },
        http: { port: 0 },
        leaderElection: { enabled: false },
        sidecar: { image: 'example.invalid/castellan:test' },
        resyncPeriod: '20s',
      },
      {},
    );
    operator = new Operator({ config, kc: kube.kc, log: logger('test.operator') });
    await operator.start();
  }, 240_000);

  afterAll(async () => {
    await operator?.stop();
    await nats?.dispose();
    await kube?.dispose();
  }, 120_000);

  const plural = (kind: 'DurableObject' | 'ReplicatedQueue') => (kind === 'DurableObject' ? 'durableobjects' : 'replicatedqueues');
  const create = async (kind: 'DurableObject' | 'ReplicatedQueue', name: string, spec: Obj): Promise<CR> =>
    (await custom.createNamespacedCustomObject({
      group, version, namespace: ns, plural: plural(kind),
      body: { apiVersion: `${group}/${version}`, kind, metadata: { name }, spec },
    })) as CR;
  const get = async (kind: 'DurableObject' | 'ReplicatedQueue', name: string): Promise<CR | undefined> => {
    try {
      return (await custom.getNamespacedCustomObject({ group, version, namespace: ns, plural: plural(kind), name })) as CR;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  };
  const patchSpec = (kind: 'DurableObject' | 'ReplicatedQueue', name: string, spec: Obj) =>
    custom.patchNamespacedCustomObject(
      { group, version, namespace: ns, plural: plural(kind), name, body: { spec } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  const remove = (kind: 'DurableObject' | 'ReplicatedQueue', name: string) =>
    custom.deleteNamespacedCustomObject({ group, version, namespace: ns, plural: plural(kind), name });
  const readSts = async (name: string) => {
    try {
      return await apps.readNamespacedStatefulSet({ name, namespace: ns });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  };
  const streamExists = async (name: string): Promise<boolean> => {
    try {
      await jsm.streams.info(name);
      return true;
    } catch (err) {
      if (/stream not found/i.test(String(err))) return false;
      throw err;
    }
  };
  const cond = (cr: CR | undefined, type: string) => cr?.status?.conditions?.find((c) => c.type === type);
  const readyAt = (kind: 'DurableObject' | 'ReplicatedQueue', name: string, generation?: number) =>
    waitFor(
      `${kind} ${name} Ready at its generation`,
      async () => {
        const cr = await get(kind, name);
        const g = generation ?? cr?.metadata.generation;
        return cr !== undefined && cr.status?.observedGeneration === g && cond(cr, 'Ready')?.status === 'True' ? cr : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );

  it('turns a DurableObject into owned children with the sidecar, its class stream, and Ready status', async () => {
    const created = await create('DurableObject', 'counter', { appPort: 8080, replicas: 2, template: appTemplate, storage: { replicas: 3 } });
    const sts = await waitFor('the StatefulSet', () => readSts('counter'), { timeoutMs: 60_000, intervalMs: 300 });
    const owner = sts.metadata?.ownerReferences?.[0];
    expect(owner).toMatchObject({ kind: 'DurableObject', name: 'counter', uid: created.metadata.uid, controller: true, blockOwnerDeletion: true });
    const pod = sts.spec!.template.spec!;
    const sidecar = pod.initContainers?.find((c) => c.name === 'castellan-sidecar');
    expect(sidecar?.restartPolicy).toBe('Always');
    const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({
      POD_NAME: 'metadata.name',
      POD_NAMESPACE: 'metadata.namespace',
      CASTELLAN_ROLE: 'object-host',
      CASTELLAN_CLASS: 'counter',
      CASTELLAN_APP_PORT: '8080',
      CASTELLAN_NATS_URL: nats.urls.join(','),
      CASTELLAN_CONCURRENCY: 'Serial',
      CASTELLAN_IDLE_TIMEOUT: '5m',
      CASTELLAN_STORAGE_REPLICAS: '3',
    });
    const appEnv = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(appEnv).toEqual({ PORT: '8080', CASTELLAN_SIDECAR_URL: 'http://127.0.0.1:3600' });
    expect(sts.spec!.template.metadata?.annotations?.['castellan.dev/config-hash']).toMatch(/^[0-9a-f]{16}$/);

    const svc = await waitFor('the Service', async () => core.readNamespacedService({ name: 'counter', namespace: ns }).catch(() => undefined), { timeoutMs: 30_000 });
    expect(svc.spec?.clusterIP).toBe('None');
    expect(svc.metadata?.ownerReferences?.[0]?.uid).toBe(created.metadata.uid);
    const pdb = await waitFor('the PDB', async () => policy.readNamespacedPodDisruptionBudget({ name: 'counter', namespace: ns }).catch(() => undefined), { timeoutMs: 30_000 });
    expect(pdb.metadata?.ownerReferences?.[0]?.uid).toBe(created.metadata.uid);
    const cm = await waitFor('the ConfigMap', async () => core.readNamespacedConfigMap({ name: 'counter-castellan', namespace: ns }).catch(() => undefined), { timeoutMs: 30_000 });
    expect(cm.data).toMatchObject({ CASTELLAN_CLASS: 'counter', CASTELLAN_ROLE: 'object-host' });

    await waitFor('the class stream', async () => ((await streamExists('CASTELLAN_OBJ_default_counter')) ? true : undefined), { timeoutMs: 30_000 });
    expect((await jsm.streams.info('CASTELLAN_OBJ_default_counter')).config.num_replicas).toBe(3);

    const ready = await readyAt('DurableObject', 'counter');
    expect(ready.status).toMatchObject({ replicas: 2, readyReplicas: 2, observedGeneration: created.metadata.generation });
    expect(cond(ready, 'Degraded')?.status).toBe('False');
    expect(ready.metadata.finalizers).toContain('castellan.dev/jetstream-assets');
    const events = await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=counter,involvedObject.kind=DurableObject' });
    expect(events.items.map((e) => e.reason)).toContain('Reconciled');
  }, 180_000);

  it('rolls the pods when the configuration changes and keeps lastTransitionTime when nothing flips', async () => {
    const before = await readyAt('DurableObject', 'counter');
    const readyTime = cond(before, 'Ready')!.lastTransitionTime;
    const oldHash = (await readSts('counter'))!.spec!.template.metadata!.annotations!['castellan.dev/config-hash'];
    await patchSpec('DurableObject', 'counter', { concurrency: 'Concurrent', storage: { replicas: 1 } });
    const sts = await waitFor(
      'a new config hash',
      async () => {
        const s = await readSts('counter');
        const h = s?.spec?.template.metadata?.annotations?.['castellan.dev/config-hash'];
        return h !== undefined && h !== oldHash ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    const newHash = sts.spec!.template.metadata!.annotations!['castellan.dev/config-hash']!;
    await waitFor(
      'every pod to carry the new config hash',
      async () => {
        const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'castellan.dev/class=counter' });
        const hashes = pods.items.filter((p) => p.metadata?.deletionTimestamp === undefined).map((p) => p.metadata?.annotations?.['castellan.dev/config-hash']);
        return hashes.length === 2 && hashes.every((h) => h === newHash) ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const after = await readyAt('DurableObject', 'counter', before.metadata.generation + 1);
    expect(after.status?.observedGeneration).toBe(before.metadata.generation + 1);
    const ready = cond(after, 'Ready')!;
    // Ready may have flipped during the roll; if it never did, its time is unchanged.
    if (ready.lastTransitionTime === readyTime) expect(ready.status).toBe('True');
    await waitFor(
      'the class stream to move to R1',
      async () => ((await jsm.streams.info('CASTELLAN_OBJ_default_counter')).config.num_replicas === 1 ? true : undefined),
      { timeoutMs: 30_000 },
    );
    const env = Object.fromEntries((sts.spec!.template.spec!.initContainers![0]!.env ?? []).map((e) => [e.name, e.value]));
    expect(env.CASTELLAN_CONCURRENCY).toBe('Concurrent');
  }, 180_000);

  it('scales with spec.replicas and reports the counts', async () => {
    await patchSpec('DurableObject', 'counter', { replicas: 3 });
    await waitFor('the StatefulSet to scale', async () => ((await readSts('counter'))?.spec?.replicas === 3 ? true : undefined), { timeoutMs: 30_000 });
    const cr = await waitFor(
      'status with 3 ready replicas',
      async () => {
        const c = await get('DurableObject', 'counter');
        return c?.status?.readyReplicas === 3 && c.status.observedGeneration === c.metadata.generation ? c : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(cr.status?.replicas).toBe(3);
  }, 120_000);

  it('repairs drift: a deleted child is re-created and an edited one is put back', async () => {
    const svc = await core.readNamespacedService({ name: 'counter', namespace: ns });
    await core.deleteNamespacedService({ name: 'counter', namespace: ns });
    const again = await waitFor(
      'the Service to come back',
      async () => {
        const s = await core.readNamespacedService({ name: 'counter', namespace: ns }).catch(() => undefined);
        return s !== undefined && s.metadata?.uid !== svc.metadata?.uid ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    expect(again.spec?.clusterIP).toBe('None');

    await apps.patchNamespacedStatefulSet(
      { name: 'counter', namespace: ns, body: { spec: { replicas: 7 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await waitFor('the StatefulSet replicas to be put back', async () => ((await readSts('counter'))?.spec?.replicas === 3 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 300,
    });

    await core.deleteNamespacedConfigMap({ name: 'counter-castellan', namespace: ns });
    await waitFor('the ConfigMap to come back', async () => core.readNamespacedConfigMap({ name: 'counter-castellan', namespace: ns }).catch(() => undefined), {
      timeoutMs: 30_000,
      intervalMs: 300,
    });
  }, 90_000);

  it('turns a ReplicatedQueue into queue hosts and its JetStream assets', async () => {
    const created = await create('ReplicatedQueue', 'jobs', { hosts: 3, replicaCount: 2, deadLetter: { queue: 'jobs-dlq', maxReceiveCount: 4 }, deletionPolicy: 'Delete' });
    const sts = await waitFor('the queue StatefulSet', () => readSts('jobs'), { timeoutMs: 60_000, intervalMs: 300 });
    expect(sts.spec?.replicas).toBe(3);
    expect(sts.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'ReplicatedQueue', uid: created.metadata.uid });
    const c = sts.spec!.template.spec!.containers[0]!;
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({
      POD_NAME: 'metadata.name',
      CASTELLAN_ROLE: 'queue-host',
      CASTELLAN_QUEUE: 'jobs',
      CASTELLAN_QUEUE_HOSTS: '3',
      CASTELLAN_QUEUE_REPLICA_COUNT: '2',
      CASTELLAN_VISIBILITY_TIMEOUT: '30s',
      CASTELLAN_MESSAGE_RETENTION: '4d',
      CASTELLAN_MAX_MESSAGE_BYTES: '262144',
      CASTELLAN_QUEUE_DELAY: '0s',
      CASTELLAN_DEAD_LETTER_QUEUE: 'jobs-dlq',
      CASTELLAN_MAX_RECEIVE_COUNT: '4',
      CASTELLAN_NATS_URL: nats.urls.join(','),
    });
    await waitFor('the queue PDB', async () => policy.readNamespacedPodDisruptionBudget({ name: 'jobs', namespace: ns }).catch(() => undefined), { timeoutMs: 30_000 });
    await waitFor('the queue Service', async () => core.readNamespacedService({ name: 'jobs', namespace: ns }).catch(() => undefined), { timeoutMs: 30_000 });
    await waitFor('the queue meta stream', async () => ((await streamExists('CASTELLAN_QM_default_jobs')) ? true : undefined), { timeoutMs: 30_000 });
    const hostStreams = async () => {
      const names: string[] = [];
      for await (const s of jsm.streams.names()) names.push(s);
      return names.filter((n) => n.startsWith('CASTELLAN_QH_default_jobs_')).sort();
    };
    await waitFor('one host stream per queue host', async () => ((await hostStreams()).length === 3 ? true : undefined), { timeoutMs: 30_000, intervalMs: 300 });
    expect(await hostStreams()).toEqual(['CASTELLAN_QH_default_jobs_jobs-0', 'CASTELLAN_QH_default_jobs_jobs-1', 'CASTELLAN_QH_default_jobs_jobs-2']);
    const ready = await readyAt('ReplicatedQueue', 'jobs');
    expect(ready.status).toMatchObject({ hosts: 3, readyHosts: 3 });
  }, 180_000);

  it('deletes the JetStream assets with deletionPolicy Delete, after the hosts are gone', async () => {
    await remove('ReplicatedQueue', 'jobs');
    await waitFor('the ReplicatedQueue to be gone', async () => ((await get('ReplicatedQueue', 'jobs')) === undefined ? true : undefined), {
      timeoutMs: 90_000,
      intervalMs: 500,
    });
    expect(await streamExists('CASTELLAN_QM_default_jobs')).toBe(false);
    expect(await streamExists('CASTELLAN_QH_default_jobs_jobs-0')).toBe(false);
    expect(await readSts('jobs')).toBeUndefined();
  }, 120_000);

  it('keeps the class stream with deletionPolicy Retain, and the garbage collector removes the children', async () => {
    await remove('DurableObject', 'counter');
    await waitFor('the DurableObject to be gone', async () => ((await get('DurableObject', 'counter')) === undefined ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    await waitFor('the garbage collector to remove the StatefulSet', async () => ((await readSts('counter')) === undefined ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    expect(await streamExists('CASTELLAN_OBJ_default_counter')).toBe(true);

    await create('DurableObject', 'scratch', { appPort: 8080, replicas: 1, template: appTemplate, deletionPolicy: 'Delete', storage: { replicas: 1 } });
    await waitFor('the scratch stream', async () => ((await streamExists('CASTELLAN_OBJ_default_scratch')) ? true : undefined), { timeoutMs: 60_000 });
    await remove('DurableObject', 'scratch');
    await waitFor('the scratch stream to be deleted', async () => ((await streamExists('CASTELLAN_OBJ_default_scratch')) ? undefined : true), {
      timeoutMs: 90_000,
      intervalMs: 500,
    });
    await waitFor('the scratch DurableObject to be gone', async () => ((await get('DurableObject', 'scratch')) === undefined ? true : undefined), { timeoutMs: 30_000 });
  }, 180_000);

  it('refuses an invalid resource at the API server, naming the field, and serves health and metrics', async () => {
    await expect(create('ReplicatedQueue', 'bad', { hosts: 1, replicaCount: 2 })).rejects.toMatchObject({ code: 422 });
    const err = (await create('ReplicatedQueue', 'bad', { hosts: 1, replicaCount: 2 }).then(
      () => ({}),
      (e: unknown) => e,
    )) as { body?: unknown };
    expect(String(err.body)).toMatch(/spec\.replicaCount/);
    const base = `http://127.0.0.1:${operator.port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/castellan_operator_reconciles_total\{kind="DurableObject",result="success"\} [1-9]/);
    expect(metrics).toMatch(/castellan_operator_leader 1/);
  }, 30_000);
  it('resumes its watches after the API server restarts', async () => {
    // The operator keeps running across the restart: its watches fail while the API server is
    // down and must resume by themselves. The harness returns once the API server serves every
    // resource again, so what follows tests the operator, not the API server's start-up.
    await kube.cluster.restart({ resources: ['statefulsets.apps', 'services', 'poddisruptionbudgets.policy', 'leases.coordination.k8s.io'] });
    await create('DurableObject', 'after-restart', { appPort: 8080, replicas: 1, template: appTemplate, storage: { replicas: 1 } });
    await waitFor('the StatefulSet of a resource created after the restart', () => readSts('after-restart'), { timeoutMs: 90_000, intervalMs: 500 });
    const cr = await waitFor(
      'its status',
      async () => {
        const c = await get('DurableObject', 'after-restart');
        return c?.status?.observedGeneration === c?.metadata.generation ? c : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(cr.metadata.finalizers).toContain('castellan.dev/jetstream-assets');
  }, 240_000);
});
