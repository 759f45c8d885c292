/**
 * The operator's pure decisions: spec parsing with defaults, the desired
 * children of a DurableObject and a ReplicatedQueue, status conditions, and
 * the operator's configuration.
 */
import { describe, expect, it } from '@jest/globals';
import type { V1Container, V1EnvVar, V1StatefulSet } from '@kubernetes/client-node';
import { ConfigError } from '../../common/config.ts';
import {
  durableObjectSpecSchema,
  parseSpec,
  replicatedQueueSpecSchema,
  type CustomResource,
  type DurableObjectSpec,
  type ReplicatedQueueSpec,
} from '../../operator/api/resources.ts';
import { queueSpecOf } from '../../operator/assets/queue-assets.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { configHashAnnotation, type OperatorDefaults } from '../../operator/desired/common.ts';
import { desiredDurableObject } from '../../operator/desired/durable-object.ts';
import { desiredReplicatedQueue } from '../../operator/desired/replicated-queue.ts';
import { computeConditions, viewStatefulSet } from '../../operator/desired/status.ts';
import { getCondition } from '../../operator/runtime/conditions.ts';

const defaults: OperatorDefaults = { natsUrls: ['nats://a:4222', 'nats://b:4222'], sidecarImage: 'example.invalid/castellan:1', sidecarLogLevel: 'info' };

function dobj(spec: Record<string, unknown>, name = 'counter'): CustomResource<DurableObjectSpec> {
  const parsed = parseSpec(durableObjectSpecSchema, spec);
  if (!parsed.ok) throw new Error(parsed.message);
  return { apiVersion: 'castellan.dev/v1alpha1', kind: 'DurableObject', metadata: { name, namespace: 'apps', uid: 'uid-1', generation: 3 }, spec: parsed.spec };
}
function rq(spec: Record<string, unknown>, name = 'jobs'): CustomResource<ReplicatedQueueSpec> {
  const parsed = parseSpec(replicatedQueueSpecSchema, spec);
  if (!parsed.ok) throw new Error(parsed.message);
  return { apiVersion: 'castellan.dev/v1alpha1', kind: 'ReplicatedQueue', metadata: { name, namespace: 'apps', uid: 'uid-2', generation: 1 }, spec: parsed.spec };
}
const envOf = (c: V1Container | undefined): Record<string, V1EnvVar> => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e]));
const template = { metadata: { labels: { team: 'a' } }, spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', env: [{ name: 'X', value: '1' }] }] } };

describe('spec parsing', () => {
  it('applies the SPEC defaults', () => {
    expect(dobj({ appPort: 8080, template }).spec).toMatchObject({ replicas: 2, concurrency: 'Serial', idleTimeout: '5m', storage: { replicas: 3 }, deletionPolicy: 'Retain' });
    expect(rq({}).spec).toMatchObject({ hosts: 3, replicaCount: 2, visibilityTimeout: '30s', messageRetention: '4d', maxMessageBytes: 262144, delay: '0s', deletionPolicy: 'Retain' });
  });

  it('names the field of an invalid spec', () => {
    const bad = parseSpec(replicatedQueueSpecSchema, { hosts: 1, replicaCount: 2 });
    expect(bad).toEqual({ ok: false, message: expect.stringMatching(/spec\.replicaCount: replicaCount must be less than or equal to hosts/) });
    const noPort = parseSpec(durableObjectSpecSchema, { template });
    expect(noPort.ok).toBe(false);
    expect(!noPort.ok && noPort.message).toMatch(/spec\.appPort/);
    const same = parseSpec(durableObjectSpecSchema, { template, appPort: 3600 });
    expect(!same.ok && same.message).toMatch(/spec\.appPort: appPort must differ/);
  });
});

describe('DurableObject → children', () => {
  const cr = dobj({ appPort: 8080, replicas: 3, template, concurrency: 'Concurrent', storage: { replicas: 1 } });
  const out = desiredDurableObject(cr, defaults);
  const sts: V1StatefulSet = out.statefulSet;
  const pod = sts.spec!.template.spec!;

  it('is a StatefulSet named after the class, owned by the resource, selecting the class label', () => {
    expect(sts.metadata).toMatchObject({ name: 'counter', namespace: 'apps' });
    expect(sts.metadata!.ownerReferences).toEqual([
      { apiVersion: 'castellan.dev/v1alpha1', kind: 'DurableObject', name: 'counter', uid: 'uid-1', controller: true, blockOwnerDeletion: true },
    ]);
    expect(sts.spec).toMatchObject({ replicas: 3, serviceName: 'counter', podManagementPolicy: 'Parallel', selector: { matchLabels: { 'castellan.dev/class': 'counter' } } });
    expect(sts.spec!.template.metadata!.labels).toMatchObject({ team: 'a', 'castellan.dev/class': 'counter', 'app.kubernetes.io/managed-by': 'castellan-operator' });
    for (const child of [out.service, out.pdb, out.configMap]) expect(child.metadata!.ownerReferences![0]!.uid).toBe('uid-1');
  });

  it('adds the sidecar as a native sidecar with the object-host environment and probes', () => {
    const init = pod.initContainers ?? [];
    expect(init.map((c) => c.name)).toEqual(['castellan-sidecar']);
    const sc = init[0]!;
    expect(sc.restartPolicy).toBe('Always');
    expect(sc.image).toBe('example.invalid/castellan:1');
    expect(sc.command).toEqual(['castellan', 'sidecar']);
    const env = envOf(sc);
    expect(env.POD_NAME!.valueFrom!.fieldRef!.fieldPath).toBe('metadata.name');
    expect(env.POD_NAMESPACE!.valueFrom!.fieldRef!.fieldPath).toBe('metadata.namespace');
    expect(Object.fromEntries(Object.entries(env).filter(([, e]) => e.value !== undefined).map(([k, e]) => [k, e.value]))).toEqual({
      CASTELLAN_HTTP_PORT: '3600',
      CASTELLAN_ADMIN_PORT: '3601',
      CASTELLAN_ROLE: 'object-host',
      CASTELLAN_CLASS: 'counter',
      CASTELLAN_APP_PORT: '8080',
      CASTELLAN_NATS_URL: 'nats://a:4222,nats://b:4222',
      CASTELLAN_LOG_LEVEL: 'info',
      CASTELLAN_CONCURRENCY: 'Concurrent',
      CASTELLAN_IDLE_TIMEOUT: '5m',
      CASTELLAN_TURN_TIMEOUT: '60s',
      CASTELLAN_STORAGE_REPLICAS: '1',
    });
    expect(JSON.stringify(sc.readinessProbe)).toContain('/readyz');
    expect(JSON.stringify(sc.livenessProbe)).toContain('/healthz');
    expect(JSON.stringify(sc.startupProbe)).toContain('/healthz');
    expect(sc.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  });

  it("gives the app PORT and CASTELLAN_SIDECAR_URL and keeps the user's container settings", () => {
    const app = pod.containers[0]!;
    expect(app.image).toBe('example.invalid/app:1');
    expect(envOf(app)).toMatchObject({ X: { value: '1' }, PORT: { value: '8080' }, CASTELLAN_SIDECAR_URL: { value: 'http://127.0.0.1:3600' } });
  });

  it("puts the sidecar before the user's own init containers", () => {
    const withInit = desiredDurableObject(
      dobj({ appPort: 8080, template: { spec: { ...template.spec, initContainers: [{ name: 'migrate', image: 'm:1' }] } } }),
      defaults,
    );
    expect(withInit.statefulSet.spec!.template.spec!.initContainers!.map((c) => c.name)).toEqual(['castellan-sidecar', 'migrate']);
  });

  it('a headless Service, a PDB and a ConfigMap with the settings', () => {
    expect(out.service.spec).toMatchObject({ clusterIP: 'None', selector: { 'castellan.dev/class': 'counter' } });
    expect(out.pdb.spec).toMatchObject({ maxUnavailable: 1, selector: { matchLabels: { 'castellan.dev/class': 'counter' } } });
    expect(out.configMap.metadata!.name).toBe('counter-castellan');
    expect(out.configMap.data).toMatchObject({ CASTELLAN_CLASS: 'counter', CASTELLAN_CONCURRENCY: 'Concurrent' });
  });

  it('changes the config hash when the settings change, not when only the replicas do', () => {
    const hash = sts.spec!.template.metadata!.annotations![configHashAnnotation];
    expect(hash).toMatch(/^[0-9a-f]{16}$/);
    const scaled = desiredDurableObject(dobj({ appPort: 8080, replicas: 5, template, concurrency: 'Concurrent', storage: { replicas: 1 } }), defaults);
    expect(scaled.hash).toBe(hash);
    const serial = desiredDurableObject(dobj({ appPort: 8080, replicas: 3, template, concurrency: 'Serial', storage: { replicas: 1 } }), defaults);
    expect(serial.hash).not.toBe(hash);
    const otherNats = desiredDurableObject(cr, { ...defaults, natsUrls: ['nats://c:4222'] });
    expect(otherNats.hash).not.toBe(hash);
  });

  it('honours spec.nats and spec.sidecar overrides, but not for the env it owns', () => {
    const o = desiredDurableObject(
      dobj({
        appPort: 8080,
        template,
        nats: { urls: ['nats://x:4222'], prefix: 'team' },
        sidecar: { image: 'img:2', httpPort: 3700, env: [{ name: 'CASTELLAN_CLASS', value: 'hijack' }, { name: 'EXTRA', value: 'y' }], resources: { limits: { memory: '256Mi' } } },
      }),
      defaults,
    );
    const sc = o.statefulSet.spec!.template.spec!.initContainers![0]!;
    const env = envOf(sc);
    expect(sc.image).toBe('img:2');
    expect(env.CASTELLAN_NATS_URL!.value).toBe('nats://x:4222');
    expect(env.CASTELLAN_NATS_PREFIX!.value).toBe('team');
    expect(env.CASTELLAN_HTTP_PORT!.value).toBe('3700');
    expect(env.CASTELLAN_CLASS!.value).toBe('counter');
    expect(env.EXTRA!.value).toBe('y');
    expect(sc.resources).toEqual({ limits: { memory: '256Mi' } });
    expect(envOf(o.statefulSet.spec!.template.spec!.containers[0]).CASTELLAN_SIDECAR_URL!.value).toBe('http://127.0.0.1:3700');
    expect(new Set(sc.env!.map((e) => e.name)).size).toBe(sc.env!.length);
  });
});

describe('ReplicatedQueue → children', () => {
  it('runs queue-host sidecars with the queue settings', () => {
    const out = desiredReplicatedQueue(rq({ hosts: 4, replicaCount: 3, delay: '10s', deadLetter: { queue: 'dlq', maxReceiveCount: 5 } }), defaults);
    const sts = out.statefulSet;
    expect(sts.metadata!.name).toBe('jobs');
    expect(sts.spec).toMatchObject({ replicas: 4, serviceName: 'jobs', selector: { matchLabels: { 'castellan.dev/queue': 'jobs' } } });
    const [c] = sts.spec!.template.spec!.containers;
    expect(c!.restartPolicy).toBeUndefined();
    const env = envOf(c);
    const values = Object.fromEntries(Object.entries(env).map(([k, e]) => [k, e.value]));
    expect(values).toMatchObject({
      CASTELLAN_ROLE: 'queue-host',
      CASTELLAN_QUEUE: 'jobs',
      CASTELLAN_QUEUE_HOSTS: '4',
      CASTELLAN_QUEUE_REPLICA_COUNT: '3',
      CASTELLAN_VISIBILITY_TIMEOUT: '30s',
      CASTELLAN_MESSAGE_RETENTION: '4d',
      CASTELLAN_MAX_MESSAGE_BYTES: '262144',
      CASTELLAN_QUEUE_DELAY: '10s',
      CASTELLAN_DEAD_LETTER_QUEUE: 'dlq',
      CASTELLAN_MAX_RECEIVE_COUNT: '5',
      CASTELLAN_NATS_URL: 'nats://a:4222,nats://b:4222',
    });
    expect(env.POD_NAME!.valueFrom!.fieldRef!.fieldPath).toBe('metadata.name');
    expect(sts.spec!.template.metadata!.annotations![configHashAnnotation]).toBe(out.hash);
    expect(out.pdb.spec!.selector!.matchLabels).toEqual({ 'castellan.dev/queue': 'jobs' });
    expect(out.statefulSet.metadata!.ownerReferences![0]).toMatchObject({ kind: 'ReplicatedQueue', uid: 'uid-2', controller: true });
    expect(desiredReplicatedQueue(rq({ hosts: 4, replicaCount: 2 }), defaults).hash).not.toBe(out.hash);
  });

  it("maps the spec to the queue engine's settings in milliseconds", () => {
    expect(queueSpecOf('jobs', rq({ visibilityTimeout: '1m30s', messageRetention: '1d12h', delay: '0s' }).spec)).toEqual({
      name: 'jobs',
      hosts: 3,
      replicaCount: 2,
      visibilityTimeoutMs: 90_000,
      messageRetentionMs: 36 * 3_600_000,
      maxMessageBytes: 262144,
      delayMs: 0,
    });
  });
});

describe('access policy → sidecars (spec.access.callers)', () => {
  it('gives the hosts the callers as JSON (none: only the own namespace) and every sidecar its ServiceAccount', () => {
    const callers = [{ namespace: 'team-a', serviceAccounts: ['web'] }, { namespace: 'ops' }];
    for (const out of [desiredDurableObject(dobj({ template, appPort: 8080, access: { callers } }), defaults), desiredReplicatedQueue(rq({ access: { callers } }), defaults)]) {
      const spec = out.statefulSet.spec!.template.spec!;
      const env = envOf([...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === 'castellan-sidecar'));
      expect(JSON.parse(env.CASTELLAN_ACCESS_CALLERS!.value!)).toEqual(callers);
      expect(env.CASTELLAN_SERVICE_ACCOUNT!.valueFrom!.fieldRef!.fieldPath).toBe('spec.serviceAccountName');
    }
    const plain = desiredDurableObject(dobj({ template, appPort: 8080 }), defaults);
    expect(plain.settings.CASTELLAN_ACCESS_CALLERS).toBeUndefined();
    // A policy change rolls the hosts (it is in the hashed settings).
    expect(desiredDurableObject(dobj({ template, appPort: 8080, access: { callers } }), defaults).hash).not.toBe(plain.hash);
  });

  it('refuses callers that are not namespaces / ServiceAccounts, naming the field', () => {
    expect(() => dobj({ template, appPort: 8080, access: { callers: [{ namespace: 'Team A' }] } })).toThrow(/access\.callers\.0\.namespace/);
  });
});

describe('secured cluster: the NATS token of the sidecars the operator creates', () => {
  it('mounts a projected ServiceAccount token (audience of the callout) into every host sidecar, and nothing without the setting', () => {
    const secured = { ...defaults, sidecarTokenAudience: 'castellan' };
    for (const spec of [desiredDurableObject(dobj({ template, appPort: 8080 }), secured).statefulSet.spec!.template.spec!, desiredReplicatedQueue(rq({}), secured).statefulSet.spec!.template.spec!]) {
      const volume = spec.volumes!.find((v) => v.name === 'castellan-token');
      expect(volume?.projected?.sources).toEqual([{ serviceAccountToken: { audience: 'castellan', expirationSeconds: 3600, path: 'token' } }]);
      const sidecar = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === 'castellan-sidecar')!;
      expect(envOf(sidecar).CASTELLAN_NATS_SA_TOKEN!.value).toBe('/var/run/secrets/castellan/token');
      expect(sidecar.volumeMounts).toContainEqual({ name: 'castellan-token', mountPath: '/var/run/secrets/castellan', readOnly: true });
      expect(spec.volumes!.filter((v) => v.name === 'castellan-tmp')).toHaveLength(1);
    }
    const plain = desiredDurableObject(dobj({ template, appPort: 8080 }), defaults).statefulSet.spec!.template.spec!;
    expect(plain.volumes!.map((v) => v.name)).toEqual(['castellan-tmp']);
    expect(envOf(plain.initContainers![0]).CASTELLAN_NATS_SA_TOKEN).toBeUndefined();
  });

  it('is an operator setting (CASTELLAN_SIDECAR_TOKEN_AUDIENCE)', () => {
    expect(loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'nats://a:4222', CASTELLAN_SIDECAR_TOKEN_AUDIENCE: 'castellan' }).sidecar.tokenAudience).toBe('castellan');
  });
});

describe('status conditions', () => {
  const sts = (status: Record<string, unknown>, generation = 1): V1StatefulSet => ({ metadata: { generation }, status: { replicas: 0, ...status } as V1StatefulSet['status'] });
  const t1 = new Date('2026-01-01T00:00:00Z');
  const t2 = new Date('2026-01-01T00:01:00Z');

  it('is Ready when every host is ready and the rollout is complete', () => {
    const view = viewStatefulSet(sts({ observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2 }), 2);
    const c = computeConditions(undefined, 4, view, undefined, 'replicas', t1);
    expect(getCondition(c, 'Ready')).toMatchObject({ status: 'True', observedGeneration: 4, reason: 'AllReady' });
    expect(getCondition(c, 'Progressing')).toMatchObject({ status: 'False', reason: 'Complete' });
    expect(getCondition(c, 'Degraded')).toMatchObject({ status: 'False' });
  });

  it('is Progressing while pods roll or scale, and not Ready while hosts are missing', () => {
    const rolling = computeConditions(undefined, 1, viewStatefulSet(sts({ observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 1 }), 2), undefined, 'hosts', t1);
    expect(getCondition(rolling, 'Progressing')).toMatchObject({ status: 'True', reason: 'RollingOut' });
    const scaling = computeConditions(undefined, 1, viewStatefulSet(sts({ observedGeneration: 1, replicas: 3, readyReplicas: 1, updatedReplicas: 3 }), 3), undefined, 'hosts', t1);
    expect(getCondition(scaling, 'Ready')).toMatchObject({ status: 'False', message: '1/3 hosts ready' });
    expect(getCondition(scaling, 'Progressing')).toMatchObject({ status: 'True', reason: 'Scaling' });
    const unseen = computeConditions(undefined, 1, viewStatefulSet(sts({ observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2 }, 2), 2), undefined, 'hosts', t1);
    expect(getCondition(unseen, 'Progressing')).toMatchObject({ status: 'True' });
    const none = computeConditions(undefined, 1, undefined, undefined, 'replicas', t1);
    expect(getCondition(none, 'Ready')).toMatchObject({ status: 'False' });
  });

  it('is Degraded (and not Ready) with the problem, and changes lastTransitionTime only on flips', () => {
    const view = viewStatefulSet(sts({ observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2 }), 2);
    const ok = computeConditions(undefined, 1, view, undefined, 'replicas', t1);
    const bad = computeConditions(ok, 1, view, { reason: 'JetStreamUnavailable', message: 'no servers' }, 'replicas', t2);
    expect(getCondition(bad, 'Degraded')).toMatchObject({ status: 'True', reason: 'JetStreamUnavailable', lastTransitionTime: '2026-01-01T00:01:00Z' });
    expect(getCondition(bad, 'Ready')).toMatchObject({ status: 'False', lastTransitionTime: '2026-01-01T00:01:00Z' });
    // Progressing did not flip: its time stays.
    expect(getCondition(bad, 'Progressing')!.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    const again = computeConditions(bad, 2, view, { reason: 'JetStreamUnavailable', message: 'still no servers' }, 'replicas', new Date('2026-01-01T00:05:00Z'));
    expect(getCondition(again, 'Degraded')).toMatchObject({ lastTransitionTime: '2026-01-01T00:01:00Z', message: 'still no servers', observedGeneration: 2 });
  });
});

describe('operator configuration', () => {
  it('reads the chart environment', () => {
    const c = loadOperatorConfig(
      {},
      {
        CASTELLAN_NATS_URL: 'nats://n1:4222, nats://n2:4222',
        CASTELLAN_WATCH_NAMESPACES: 'a,b',
        CASTELLAN_OPERATOR_HOST: '0.0.0.0',
        CASTELLAN_OPERATOR_PORT: '9090',
        CASTELLAN_LEADER_ELECT: 'true',
        POD_NAMESPACE: 'castellan-system',
        POD_NAME: 'op-1',
        CASTELLAN_LEADER_ELECTION_LEASE_DURATION: '20s',
        CASTELLAN_SIDECAR_IMAGE: 'img:1',
      },
    );
    expect(c).toMatchObject({
      identity: 'op-1',
      nats: { urls: ['nats://n1:4222', 'nats://n2:4222'] },
      namespaces: ['a', 'b'],
      http: { host: '0.0.0.0', port: 9090 },
      leaderElection: { enabled: true, namespace: 'castellan-system', lease: 'castellan-operator', leaseDuration: 20_000, renewDeadline: 10_000 },
      sidecar: { image: 'img:1' },
    });
  });

  it('refuses a missing NATS URL and inconsistent election timings, naming the setting', () => {
    expect(() => loadOperatorConfig({}, {})).toThrow(ConfigError);
    expect(() => loadOperatorConfig({}, {})).toThrow(/nats\.urls/);
    expect(() => loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'nats://a:1', CASTELLAN_LEADER_ELECTION_RENEW_DEADLINE: '20s' })).toThrow(/leaderElection\.renewDeadline/);
    expect(() => loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'http://a:1' })).toThrow(/nats\.urls\.0: expected a nats:\/\/ URL/);
  });
});
