/**
 * Pods that behave (issue 14), as the operator builds them: probes are httpGet
 * on the sidecar's admin port (no process started per probe), the app's
 * preStop hook drains the sidecar first, sidecars get the chart's default
 * resources unless the resource sets its own, and hosts spread over nodes
 * unless the user's template says otherwise.
 */
import { describe, expect, it } from '@jest/globals';
import type { V1Container } from '@kubernetes/client-node';
import { durableObjectSpecSchema, parseSpec, replicatedQueueSpecSchema, type CustomResource, type DurableObjectSpec, type ReplicatedQueueSpec } from '../../operator/api/resources.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { sidecarAdminPort, type OperatorDefaults } from '../../operator/desired/common.ts';
import { desiredDurableObject } from '../../operator/desired/durable-object.ts';
import { desiredReplicatedQueue } from '../../operator/desired/replicated-queue.ts';

const resources = { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '384Mi' } };
const defaults: OperatorDefaults = { natsUrls: ['nats://a:4222'], sidecarImage: 'castellan:dev', sidecarResources: resources };

function dobj(spec: Record<string, unknown>): CustomResource<DurableObjectSpec> {
  const parsed = parseSpec(durableObjectSpecSchema, spec);
  if (!parsed.ok) throw new Error(parsed.message);
  return { apiVersion: 'castellan.dev/v1alpha1', kind: 'DurableObject', metadata: { name: 'counter', namespace: 'apps', uid: 'u1', generation: 1 }, spec: parsed.spec };
}
function rq(spec: Record<string, unknown>): CustomResource<ReplicatedQueueSpec> {
  const parsed = parseSpec(replicatedQueueSpecSchema, spec);
  if (!parsed.ok) throw new Error(parsed.message);
  return { apiVersion: 'castellan.dev/v1alpha1', kind: 'ReplicatedQueue', metadata: { name: 'jobs', namespace: 'apps', uid: 'u2', generation: 1 }, spec: parsed.spec };
}
const app = { name: 'app', image: 'castellan-examples:dev' };

describe('object-host and queue-host pods', () => {
  const pod = desiredDurableObject(dobj({ appPort: 8080, template: { spec: { containers: [app] } } }), defaults).statefulSet.spec!.template.spec!;
  const sidecar = pod.initContainers![0]!;
  const queuePod = desiredReplicatedQueue(rq({}), defaults).statefulSet.spec!.template.spec!;

  it('probe the sidecar with httpGet on its admin port, which the sidecar is told to open', () => {
    for (const c of [sidecar, queuePod.containers[0]!]) {
      expect(c.ports).toContainEqual({ name: 'castellan-admin', containerPort: sidecarAdminPort, protocol: 'TCP' });
      expect(c.env).toContainEqual({ name: 'CASTELLAN_ADMIN_PORT', value: String(sidecarAdminPort) });
      for (const [probe, path] of [
        [c.startupProbe, '/healthz'],
        [c.livenessProbe, '/healthz'],
        [c.readinessProbe, '/readyz'],
      ] as const) {
        expect(probe?.exec).toBeUndefined();
        expect(probe?.httpGet).toEqual({ path, port: 'castellan-admin', scheme: 'HTTP' });
      }
    }
  });

  it("drain the sidecar in the app's preStop hook, keeping a user's own hook", () => {
    expect(pod.containers[0]!.lifecycle?.preStop?.httpGet).toEqual({ path: '/drain', port: sidecarAdminPort, scheme: 'HTTP' });
    const own: V1Container = { ...app, lifecycle: { preStop: { exec: { command: ['/bin/flush'] } }, postStart: { exec: { command: ['/bin/warm'] } } } };
    const withOwn = desiredDurableObject(dobj({ appPort: 8080, template: { spec: { containers: [own] } } }), defaults).statefulSet.spec!.template.spec!;
    expect(withOwn.containers[0]!.lifecycle).toEqual(own.lifecycle);
  });

  it('give object hosts a grace period that covers the drain (turnTimeout + 30 s), unless the template sets one', () => {
    expect(pod.terminationGracePeriodSeconds).toBe(90);
    const slow = desiredDurableObject(dobj({ appPort: 8080, turnTimeout: '5m', template: { spec: { containers: [app] } } }), defaults).statefulSet.spec!.template.spec!;
    expect(slow.terminationGracePeriodSeconds).toBe(330);
    const fast = desiredDurableObject(dobj({ appPort: 8080, turnTimeout: '2s', template: { spec: { containers: [app] } } }), defaults).statefulSet.spec!.template.spec!;
    expect(fast.terminationGracePeriodSeconds).toBe(60);
    const own = desiredDurableObject(dobj({ appPort: 8080, template: { spec: { containers: [app], terminationGracePeriodSeconds: 7 } } }), defaults).statefulSet.spec!.template.spec!;
    expect(own.terminationGracePeriodSeconds).toBe(7);
  });

  it('give sidecars the default resources unless the resource sets its own', () => {
    expect(sidecar.resources).toEqual(resources);
    expect(queuePod.containers[0]!.resources).toEqual(resources);
    const own = { requests: { cpu: '1', memory: '1Gi' } };
    const q = desiredReplicatedQueue(rq({ sidecar: { resources: own } }), defaults).statefulSet.spec!.template.spec!;
    expect(q.containers[0]!.resources).toEqual(own);
  });

  it("spread hosts over nodes unless the user's template says how", () => {
    const spread = { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' };
    expect(pod.topologySpreadConstraints).toEqual([{ ...spread, labelSelector: { matchLabels: { 'castellan.dev/class': 'counter' } } }]);
    expect(queuePod.topologySpreadConstraints).toEqual([{ ...spread, labelSelector: { matchLabels: { 'castellan.dev/queue': 'jobs' } } }]);
    const zone = [{ maxSkew: 2, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { a: 'b' } } }];
    const own = desiredDurableObject(dobj({ appPort: 8080, template: { spec: { containers: [app], topologySpreadConstraints: zone } } }), defaults).statefulSet.spec!.template.spec!;
    expect(own.topologySpreadConstraints).toEqual(zone);
  });
});

describe('operator configuration', () => {
  it('reads default sidecar resources as JSON (the chart passes sidecar.resources)', () => {
    const c = loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'nats://a:4222', CASTELLAN_SIDECAR_RESOURCES: JSON.stringify(resources) });
    expect(c.sidecar.resources).toEqual(resources);
    expect(() => loadOperatorConfig({}, { CASTELLAN_NATS_URL: 'nats://a:4222', CASTELLAN_SIDECAR_RESOURCES: '{cpu' })).toThrow(/JSON/);
  });
});

describe('ReplicatedQueue podTemplate', () => {
  it('puts the pod settings on the queue-host pods; Castellan labels and the config hash win', () => {
    const podTemplate = {
      metadata: { labels: { team: 'q', 'castellan.dev/queue': 'other' }, annotations: { 'example.com/a': 'b' } },
      nodeSelector: { pool: 'queues' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'queues', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['queues'] }] }] } } },
      priorityClassName: 'high',
      imagePullSecrets: [{ name: 'regcred' }],
    };
    const sts = desiredReplicatedQueue(rq({ podTemplate }), defaults).statefulSet.spec!.template;
    expect(sts.metadata!.labels).toMatchObject({ team: 'q', 'castellan.dev/queue': 'jobs' });
    expect(sts.metadata!.annotations).toMatchObject({ 'example.com/a': 'b', 'castellan.dev/config-hash': expect.any(String) });
    expect(sts.spec).toMatchObject({
      nodeSelector: podTemplate.nodeSelector,
      tolerations: podTemplate.tolerations,
      affinity: podTemplate.affinity,
      priorityClassName: 'high',
      imagePullSecrets: [{ name: 'regcred' }],
    });
    expect(sts.spec!.containers.map((c) => c.name)).toEqual(['castellan-sidecar']);
  });
});
