/**
 * End to end through Kubernetes: resources applied with kubectl are reconciled
 * by the operator; a stand-in for the kubelet (test/harness/kube.ts) runs the
 * real sidecar and app processes of every Running pod on loopback, with the
 * env the operator put in the pod spec. A DurableObject then serves calls with
 * durable storage, a ReplicatedQueue sends and receives, and deleting a pod
 * (kubectl delete pod) fails its objects over to another host without losing
 * state. Nothing dials a pod IP.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/logger.ts';
import { waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { installCrds, KubeletStandIn, startKube, type TestKube } from '../harness/kube.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const manifests = `
apiVersion: castellan.dev/v1alpha1
kind: DurableObject
metadata: {name: counter, namespace: default}
spec:
  appPort: 8080
  replicas: 2
  storage: {replicas: 3}
  template:
    spec:
      containers: [{name: app, image: castellan.test/counter}]
---
apiVersion: castellan.dev/v1alpha1
kind: ReplicatedQueue
metadata: {name: jobs, namespace: default}
spec: {hosts: 3, replicaCount: 2}
`;

describe('end to end: kubectl apply → operator → pods running the real sidecar', () => {
  let kube: TestKube;
  let nats: TestNats;
  let operator: Operator;
  let standIn: KubeletStandIn;
  let client: SidecarProc;
  const dir = mkdtempSync(join(tmpdir(), 'castellan-e2e-'));

  beforeAll(async () => {
    // Both in parallel; whichever started is assigned (and disposed in afterAll) even if the other failed.
    const [k, n] = await Promise.allSettled([startKube(1), startNats(3)]);
    if (k.status === 'fulfilled') kube = k.value;
    if (n.status === 'fulfilled') nats = n.value;
    if (k.status === 'rejected') throw k.reason;
    if (n.status === 'rejected') throw n.reason;
    await installCrds(kube);
    const config = loadOperatorConfig({ identity: 'e2e', nats: { urls: nats.urls }, http: { port: 0 }, leaderElection: { enabled: false }, resyncPeriod: '20s' }, {});
    operator = new Operator({ config, kc: kube.kc, log: logger('test.operator') });
    await operator.start();
    standIn = new KubeletStandIn(kube, {
      namespace: 'default',
      apps: { 'castellan.test/counter': [join(projectRoot, 'examples', 'counter', 'app.js')] },
      sidecarEnv: { CASTELLAN_LEASE_TTL: '1s' },
      logDir: dir,
    });
    standIn.start();
    client = await startClient('e2e-client', nats.urls, { POD_NAMESPACE: 'default' });
  }, 240_000);

  afterAll(async () => {
    await stopProc(client);
    await standIn?.stop();
    await operator?.stop();
    await nats?.dispose();
    await kube?.dispose();
  }, 120_000);

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${client.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('serves a DurableObject and a ReplicatedQueue created with kubectl apply', async () => {
    const file = join(dir, 'resources.yaml');
    writeFileSync(file, manifests);
    await kube.cluster.kubectl(['apply', '-f', file]);
    await waitFor('sidecars of 2 object hosts and 3 queue hosts', async () => (standIn.running().length === 5 ? true : undefined), { timeoutMs: 120_000, intervalMs: 500 });
    expect(standIn.running()).toEqual(['counter-0', 'counter-1', 'jobs-0', 'jobs-1', 'jobs-2']);

    const first = await waitFor(
      'an object call to succeed',
      async () => {
        const r = await call('POST', '/v1/objects/counter/alpha/increment');
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(first.body.value).toBe(1);
    expect((await call('POST', '/v1/objects/counter/alpha/increment')).body.value).toBe(2);

    const sent = await waitFor(
      'a queue send to succeed',
      async () => {
        const r = await call('POST', '/v1/queues/jobs/messages', { body: 'hello' });
        return r.status === 201 ? r : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(sent.body.replicas).toHaveLength(2);
    const got = await call('POST', '/v1/queues/jobs/receive', { maxMessages: 1, waitSeconds: 10 });
    const messages = got.body.messages as { body: string; receiptHandle: string }[];
    expect(messages.map((m) => m.body)).toEqual(['hello']);
    const del = await fetch(`${client.url}/v1/queues/jobs/messages/${encodeURIComponent(messages[0]!.receiptHandle)}`, { method: 'DELETE' });
    expect(del.status).toBe(204);

    const custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    const dobj = (await custom.getNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects', name: 'counter' })) as {
      status?: { conditions?: { type: string; status: string }[] };
    };
    expect(dobj.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  }, 240_000);

  it('fails an object over when its pod is deleted, keeping its storage', async () => {
    const before = (await call('POST', '/v1/objects/counter/alpha/increment')).body.value as number;
    // Delete both pods one after the other: wherever alpha lived, its host goes away.
    for (const pod of ['counter-0', 'counter-1']) {
      const uid = standIn.podUid(pod);
      expect(uid).toBeDefined();
      await kube.cluster.kubectl(['delete', 'pod', pod, '--wait=false']);
      await waitFor(`${pod} to be replaced and running again`, async () => {
        const now = standIn.podUid(pod);
        return now !== undefined && now !== uid ? true : undefined;
      }, { timeoutMs: 90_000, intervalMs: 300 });
      await waitFor('the object to answer', async () => {
        const r = await call('POST', '/v1/objects/counter/alpha/increment');
        return r.status === 200 ? r : undefined;
      }, { timeoutMs: 60_000, intervalMs: 300 });
    }
    const after = (await call('POST', '/v1/objects/counter/alpha/increment')).body.value as number;
    // At least the three acknowledged increments are there (a timed-out attempt may have counted too).
    expect(after).toBeGreaterThanOrEqual(before + 3);
  }, 240_000);
  it('delivers a queue message after one of its replica hosts is deleted', async () => {
    const sent = await call('POST', '/v1/queues/jobs/messages', { body: 'survivor', replicas: 2 });
    expect(sent.status).toBe(201);
    const replicas = sent.body.replicas as string[];
    expect(replicas).toHaveLength(2);
    const victim = replicas[0]!;
    const uid = standIn.podUid(victim);
    await kube.cluster.kubectl(['delete', 'pod', victim, '--wait=false']);
    await waitFor(`${victim}'s processes to be stopped`, async () => (standIn.podUid(victim) !== uid ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    const got = await waitFor(
      'the message to be received',
      async () => {
        const r = await call('POST', '/v1/queues/jobs/receive', { maxMessages: 1, waitSeconds: 5 });
        const m = (r.body.messages as { body: string }[] | undefined) ?? [];
        return m.length > 0 ? m : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(got.map((m) => m.body)).toEqual(['survivor']);
    // The received message is in flight: the operator's periodic stats (over NATS) count it in status.
    const custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    await waitFor(
      'status.approximateMessages to count the in-flight message',
      async () => {
        const rq = (await custom.getNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'replicatedqueues', name: 'jobs' })) as {
          status?: { approximateMessages?: number };
        };
        return rq.status?.approximateMessages === 1 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 1_000 },
    );
  }, 180_000);
});
