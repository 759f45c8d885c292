/**
 * The CRDs in front of a real kube-apiserver: they establish, valid resources get
 * their defaults, invalid ones are refused by the API server (OpenAPI schema and
 * CEL rules) with a message that names the field, and `kubectl explain`, printer
 * columns and the status and scale subresources work. No operator runs here.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { projectRoot } from '../../common/paths.ts';
import { startKube, type TestKube } from '../harness/kube.ts';

const group = 'castellan.dev';
const version = 'v1alpha1';
const namespace = 'default';
const crdDir = join(projectRoot, 'crds');

type Obj = Record<string, unknown>;
interface Resource {
  metadata: { name: string; generation?: number; resourceVersion?: string };
  spec: Obj;
  status?: Obj;
}

const template = { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', command: ['node', 'app.js'] }] } };

function durableObject(name: string, spec: Obj): Obj {
  return { apiVersion: `${group}/${version}`, kind: 'DurableObject', metadata: { name }, spec };
}
function replicatedQueue(name: string, spec?: Obj): Obj {
  return { apiVersion: `${group}/${version}`, kind: 'ReplicatedQueue', metadata: { name }, ...(spec ? { spec } : {}) };
}

/** The API server's explanation of a refused request. */
function refusal(err: unknown): { code: number | undefined; message: string } {
  const e = err as { code?: number; body?: unknown; message?: string };
  let message = e.message ?? String(err);
  const body = typeof e.body === 'string' ? safeJson(e.body) : e.body;
  if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    message = (body as { message: string }).message;
  }
  return { code: e.code, message };
}
function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

describe('castellan.dev CRDs on a real API server', () => {
  let kube: TestKube;
  let api: k8s.CustomObjectsApi;

  const create = async (plural: string, body: Obj): Promise<Resource> =>
    (await api.createNamespacedCustomObject({ group, version, namespace, plural, body })) as Resource;
  const get = async (plural: string, name: string): Promise<Resource> =>
    (await api.getNamespacedCustomObject({ group, version, namespace, plural, name })) as Resource;
  /** Creates with dryRun=All and returns the API server's refusal. */
  const refused = async (plural: string, body: Obj): Promise<{ code: number | undefined; message: string }> => {
    try {
      await api.createNamespacedCustomObject({ group, version, namespace, plural, body, dryRun: 'All' });
    } catch (err) {
      return refusal(err);
    }
    throw new Error(`the API server accepted ${JSON.stringify(body)}`);
  };

  beforeAll(async () => {
    kube = await startKube(1);
    api = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    await kube.cluster.kubectl(['apply', '--server-side', '--field-manager=castellan-test', '-f', crdDir]);
    await kube.cluster.kubectl(
      ['wait', '--for=condition=Established', '--timeout=60s', 'crd/durableobjects.castellan.dev', 'crd/replicatedqueues.castellan.dev'],
      70_000,
    );
  }, 180_000);

  afterAll(async () => {
    await kube?.dispose();
  }, 90_000);

  it('establishes both CRDs with their short names and category', async () => {
    const out = await kube.cluster.kubectl(['api-resources', '--api-group=castellan.dev', '-o', 'wide', '--no-headers']);
    expect(out).toMatch(/^durableobjects\s+dobj\s+castellan\.dev\/v1alpha1\s+true\s+DurableObject\s.*castellan/m);
    expect(out).toMatch(/^replicatedqueues\s+rq\s+castellan\.dev\/v1alpha1\s+true\s+ReplicatedQueue\s.*castellan/m);
  });

  it('defaults a DurableObject: replicas 2, Serial, idleTimeout 5m, storage.replicas 3, Retain', async () => {
    const dobj = await create('durableobjects', durableObject('counter', { appPort: 8080, template }));
    expect(dobj.spec).toEqual({
      replicas: 2,
      template,
      appPort: 8080,
      concurrency: 'Serial',
      idleTimeout: '5m',
      turnTimeout: '60s',
      storage: { replicas: 3 },
      deletionPolicy: 'Retain',
    });
    // The template's pod spec is kept as given (unknown PodSpec fields preserved).
    const full = await create(
      'durableobjects',
      durableObject('full', {
        appPort: 9000,
        replicas: 5,
        concurrency: 'Concurrent',
        idleTimeout: '1h30m',
        storage: { replicas: 1 },
        deletionPolicy: 'Delete',
        template: { metadata: { labels: { team: 'a' } }, spec: { ...template.spec, nodeSelector: { disk: 'ssd' }, priorityClassName: 'x' } },
        nats: { urls: ['nats://nats-0:4222', 'tls://nats-1:4222'], prefix: 'team_a' },
        sidecar: {
          image: 'example.invalid/castellan:2',
          httpPort: 3700,
          logLevel: 'debug',
          resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: 1073741824 } },
          env: [{ name: 'A', value: '1' }, { name: 'B', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        },
      }),
    );
    expect(full.spec).toMatchObject({
      replicas: 5,
      concurrency: 'Concurrent',
      storage: { replicas: 1 },
      template: { spec: { nodeSelector: { disk: 'ssd' }, priorityClassName: 'x' } },
      sidecar: { env: [{ name: 'A' }, { name: 'B', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }] },
    });
  });

  it('defaults a ReplicatedQueue: hosts 3, replicaCount 2, 30s, 4d, 256 KiB, 0s, Retain (even without a spec)', async () => {
    const expected = {
      hosts: 3,
      replicaCount: 2,
      visibilityTimeout: '30s',
      messageRetention: '4d',
      maxMessageBytes: 262144,
      delay: '0s',
      deletionPolicy: 'Retain',
    };
    expect((await create('replicatedqueues', replicatedQueue('jobs', {}))).spec).toEqual(expected);
    expect((await create('replicatedqueues', replicatedQueue('bare'))).spec).toEqual(expected);
    const edge = await create(
      'replicatedqueues',
      replicatedQueue('edge', {
        hosts: 5,
        replicaCount: 5,
        visibilityTimeout: '12h',
        messageRetention: '14d',
        maxMessageBytes: 1048576,
        delay: '15m',
        deadLetter: { queue: 'jobs', maxReceiveCount: 5 },
      }),
    );
    expect(edge.spec).toMatchObject({ replicaCount: 5, messageRetention: '14d', delay: '15m', deadLetter: { queue: 'jobs', maxReceiveCount: 5 } });
    for (const retention of ['336h', '13d23h59m', '1m', '90m', '1d12h']) {
      await expect(api.createNamespacedCustomObject({
        group, version, namespace, plural: 'replicatedqueues', dryRun: 'All',
        body: replicatedQueue('ok', { messageRetention: retention }),
      })).resolves.toBeDefined();
    }
  });

  const invalid: [string, string, Obj, RegExp][] = [
    ['replicaCount > hosts', 'replicatedqueues', replicatedQueue('q', { hosts: 2, replicaCount: 3 }), /spec\.replicaCount.*replicaCount must be less than or equal to hosts/],
    ['replicaCount > hosts (defaults)', 'replicatedqueues', replicatedQueue('q', { hosts: 1 }), /spec\.replicaCount.*less than or equal to hosts/],
    ['replicaCount 6', 'replicatedqueues', replicatedQueue('q', { hosts: 9, replicaCount: 6 }), /spec\.replicaCount.*less than or equal to 5/],
    ['hosts 0', 'replicatedqueues', replicatedQueue('q', { hosts: 0, replicaCount: 1 }), /spec\.hosts.*greater than or equal to 1/],
    ['messageRetention 15d', 'replicatedqueues', replicatedQueue('q', { messageRetention: '15d' }), /spec\.messageRetention.*messageRetention must be at most 14d/],
    ['messageRetention 337h', 'replicatedqueues', replicatedQueue('q', { messageRetention: '337h' }), /spec\.messageRetention.*at most 14d/],
    ['messageRetention 14d1s', 'replicatedqueues', replicatedQueue('q', { messageRetention: '14d1s' }), /spec\.messageRetention.*at most 14d/],
    ['messageRetention 30s', 'replicatedqueues', replicatedQueue('q', { messageRetention: '30s' }), /spec\.messageRetention.*at least 1m/],
    ['messageRetention 4days', 'replicatedqueues', replicatedQueue('q', { messageRetention: '4days' }), /spec\.messageRetention.*should match/],
    ['maxMessageBytes 2000000', 'replicatedqueues', replicatedQueue('q', { maxMessageBytes: 2000000 }), /spec\.maxMessageBytes.*less than or equal to 1048576/],
    ['maxMessageBytes 0', 'replicatedqueues', replicatedQueue('q', { maxMessageBytes: 0 }), /spec\.maxMessageBytes.*greater than or equal to 1/],
    ['delay 16m', 'replicatedqueues', replicatedQueue('q', { delay: '16m' }), /spec\.delay.*delay must be at most 15m/],
    ['delay 900001ms', 'replicatedqueues', replicatedQueue('q', { delay: '900001ms' }), /spec\.delay.*at most 15m/],
    ['delay 1d', 'replicatedqueues', replicatedQueue('q', { delay: '1d' }), /spec\.delay.*at most 15m/],
    ['visibilityTimeout 13h', 'replicatedqueues', replicatedQueue('q', { visibilityTimeout: '13h' }), /spec\.visibilityTimeout.*at most 12h/],
    ['delay 5us (units are ms, s, m, h and leading d)', 'replicatedqueues', replicatedQueue('q', { delay: '5us' }), /spec\.delay.*should match/],
    ['visibilityTimeout 30', 'replicatedqueues', replicatedQueue('q', { visibilityTimeout: '30' }), /spec\.visibilityTimeout/],
    ['deadLetter to itself', 'replicatedqueues', replicatedQueue('q', { deadLetter: { queue: 'q', maxReceiveCount: 3 } }), /spec\.deadLetter\.queue.*another queue/],
    ['deadLetter maxReceiveCount 0', 'replicatedqueues', replicatedQueue('q', { deadLetter: { queue: 'dlq', maxReceiveCount: 0 } }), /spec\.deadLetter\.maxReceiveCount.*greater than or equal to 1/],
    ['deadLetter without queue', 'replicatedqueues', replicatedQueue('q', { deadLetter: { maxReceiveCount: 3 } }), /spec\.deadLetter\.queue.*Required/],
    ['queue deletionPolicy Keep', 'replicatedqueues', replicatedQueue('q', { deletionPolicy: 'Keep' }), /spec\.deletionPolicy.*Unsupported value.*"Retain", "Delete"/],
    ['appPort missing', 'durableobjects', durableObject('d', { template }), /spec\.appPort.*Required/],
    ['appPort 70000', 'durableobjects', durableObject('d', { appPort: 70000, template }), /spec\.appPort.*less than or equal to 65535/],
    ['appPort = sidecar port', 'durableobjects', durableObject('d', { appPort: 3600, template }), /spec\.appPort.*must differ from the sidecar's HTTP port/],
    ['bad concurrency', 'durableobjects', durableObject('d', { appPort: 8080, concurrency: 'Parallel', template }), /spec\.concurrency.*Unsupported value.*"Serial", "Concurrent"/],
    ['replicas 0', 'durableobjects', durableObject('d', { appPort: 8080, replicas: 0, template }), /spec\.replicas.*greater than or equal to 1/],
    ['storage.replicas 6', 'durableobjects', durableObject('d', { appPort: 8080, storage: { replicas: 6 }, template }), /spec\.storage\.replicas.*less than or equal to 5/],
    ['idleTimeout soon', 'durableobjects', durableObject('d', { appPort: 8080, idleTimeout: 'soon', template }), /spec\.idleTimeout.*should match/],
    ['template missing', 'durableobjects', durableObject('d', { appPort: 8080 }), /spec\.template.*Required/],
    ['no containers', 'durableobjects', durableObject('d', { appPort: 8080, template: { spec: { containers: [] } } }), /spec\.template\.spec\.containers.*at least 1/],
    ['deletionPolicy Keep', 'durableobjects', durableObject('d', { appPort: 8080, deletionPolicy: 'Keep', template }), /spec\.deletionPolicy.*Unsupported value/],
    ['nats url without scheme', 'durableobjects', durableObject('d', { appPort: 8080, nats: { urls: ['nats-0:4222'] }, template }), /spec\.nats\.urls\[0\].*should match/],
    ['sidecar logLevel', 'durableobjects', durableObject('d', { appPort: 8080, sidecar: { logLevel: 'loud' }, template }), /spec\.sidecar\.logLevel.*Unsupported value/],
  ];

  it.each(invalid)('refuses %s, naming the field', async (_what, plural, body, message) => {
    const res = await refused(plural, body);
    expect(res.code).toBe(422);
    expect(res.message).toMatch(message);
  });

  it('refuses an update that breaks a rule (hosts below replicaCount), and kubectl reports the field', async () => {
    await create('replicatedqueues', replicatedQueue('shrink', { hosts: 3, replicaCount: 3 }));
    const err = await kube.cluster
      .kubectl(['patch', 'rq', 'shrink', '--type=merge', '-p', '{"spec":{"hosts":2}}'])
      .then(() => undefined, (e: unknown) => e as { stderr?: string });
    expect(err?.stderr).toMatch(/spec\.replicaCount.*replicaCount must be less than or equal to hosts/);
    expect((await get('replicatedqueues', 'shrink')).spec.hosts).toBe(3);
  });

  it('explains the fields with kubectl explain', async () => {
    const appPort = await kube.cluster.kubectl(['explain', 'durableobjects.spec.appPort']);
    expect(appPort).toMatch(/FIELD:\s+appPort <integer>/);
    expect(appPort).toMatch(/TCP port on which the application listens/);
    const retention = await kube.cluster.kubectl(['explain', 'rq.spec.messageRetention']);
    expect(retention).toMatch(/default 4d, from 1m to 14d/);
    const spec = await kube.cluster.kubectl(['explain', 'dobj.spec']);
    for (const field of ['appPort', 'concurrency', 'deletionPolicy', 'idleTimeout', 'nats', 'replicas', 'sidecar', 'storage', 'template']) {
      expect(spec).toMatch(new RegExp(`^\\s+${field}\\s+<`, 'm'));
    }
  });

  it('writes status only through the status subresource, with metav1.Condition shape', async () => {
    const before = await get('durableobjects', 'counter');
    const condition = {
      type: 'Ready', status: 'True', observedGeneration: before.metadata.generation,
      lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), reason: 'AllReplicasReady', message: '2/2 replicas ready',
    };
    const status = { replicas: 2, readyReplicas: 2, observedGeneration: before.metadata.generation, selector: 'castellan.dev/class=counter', conditions: [condition] };
    await api.patchNamespacedCustomObjectStatus(
      { group, version, namespace, plural: 'durableobjects', name: 'counter', body: [{ op: 'add', path: '/status', value: status }] },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
    );
    const after = await get('durableobjects', 'counter');
    expect(after.status).toEqual(status);
    expect(after.metadata.generation).toBe(before.metadata.generation); // status writes do not bump the generation
    // Writes to the main resource ignore status.
    await kube.cluster.kubectl(['patch', 'dobj', 'counter', '--type=merge', '-p', '{"status":{"readyReplicas":0}}']);
    expect((await get('durableobjects', 'counter')).status).toEqual(status);

    try {
      await api.patchNamespacedCustomObjectStatus(
        { group, version, namespace, plural: 'durableobjects', name: 'counter', body: [{ op: 'replace', path: '/status/conditions/0/status', value: 'Maybe' }] },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
      );
      throw new Error('a condition status "Maybe" was accepted');
    } catch (err) {
      expect(refusal(err).message).toMatch(/status\.conditions\[0\]\.status.*Unsupported value/);
    }

    const table = await kube.cluster.kubectl(['get', 'dobj', 'counter']);
    expect(table).toMatch(/^NAME\s+READY\s+REPLICAS\s+READY REPLICAS\s+AGE/m);
    expect(table).toMatch(/^counter\s+True\s+2\s+2\s+/m);
    const queues = await kube.cluster.kubectl(['get', 'rq', 'jobs']);
    expect(queues).toMatch(/^NAME\s+READY\s+HOSTS\s+READY HOSTS\s+REPLICAS\s+AGE/m);
    expect(queues).toMatch(/^jobs\s+\s+3\s+\s+2\s+/m);
    expect(await kube.cluster.kubectl(['get', 'castellan', '-o', 'name'])).toMatch(/durableobject\.castellan\.dev\/counter[\s\S]*replicatedqueue\.castellan\.dev\/jobs/);
  });

  it('scales through the scale subresource, still applying the rules', async () => {
    await kube.cluster.kubectl(['scale', 'dobj', 'counter', '--replicas=4']);
    expect((await get('durableobjects', 'counter')).spec.replicas).toBe(4);
    await kube.cluster.kubectl(['scale', 'rq', 'jobs', '--replicas=5']);
    expect((await get('replicatedqueues', 'jobs')).spec.hosts).toBe(5);
    const err = await kube.cluster.kubectl(['scale', 'rq', 'jobs', '--replicas=1']).then(() => undefined, (e: unknown) => e as { stderr?: string });
    expect(err?.stderr).toMatch(/replicaCount must be less than or equal to hosts/);
    expect((await get('replicatedqueues', 'jobs')).spec.hosts).toBe(5);
  });
});
