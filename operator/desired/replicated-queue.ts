/**
 * ReplicatedQueue → desired children (pure): a StatefulSet of queue hosts
 * (pods `<queue>-<ordinal>` running only the Castellan sidecar in the
 * queue-host role), a headless Service, a PodDisruptionBudget and a ConfigMap
 * with the queue's settings, all owned by the ReplicatedQueue.
 */
import type { V1ConfigMap, V1PodDisruptionBudget, V1PodSpec, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { CustomResource, ReplicatedQueueSpec } from '../api/resources.ts';
import {
  commonLabels,
  configHash,
  configHashAnnotation,
  disruptionBudget,
  headlessService,
  hostSpread,
  natsSettings,
  accessSettings,
  ownerReference,
  selectorLabels,
  settingsConfigMap,
  sidecarContainer,
  sidecarVolumes,
  sidecarPort,
  type OperatorDefaults,
} from './common.ts';

export interface ReplicatedQueueChildren {
  statefulSet: V1StatefulSet;
  service: V1Service;
  pdb: V1PodDisruptionBudget;
  configMap: V1ConfigMap;
  settings: Record<string, string>;
  hash: string;
}

/** The queue-host sidecar's settings (the queue env names of the common brief). */
export function queueHostSettings(cr: CustomResource<ReplicatedQueueSpec>, defaults: OperatorDefaults): Record<string, string> {
  const s = cr.spec;
  const out: Record<string, string> = {
    CASTELLAN_ROLE: 'queue-host',
    CASTELLAN_QUEUE: cr.metadata.name,
    ...natsSettings(s.nats, s.sidecar, defaults),
    ...accessSettings(s.access),
    CASTELLAN_QUEUE_HOSTS: String(s.hosts),
    CASTELLAN_QUEUE_REPLICA_COUNT: String(s.replicaCount),
    CASTELLAN_VISIBILITY_TIMEOUT: s.visibilityTimeout,
    CASTELLAN_MESSAGE_RETENTION: s.messageRetention,
    CASTELLAN_MAX_MESSAGE_BYTES: String(s.maxMessageBytes),
    CASTELLAN_QUEUE_DELAY: s.delay,
  };
  if (s.deadLetter !== undefined) {
    out.CASTELLAN_DEAD_LETTER_QUEUE = s.deadLetter.queue;
    out.CASTELLAN_MAX_RECEIVE_COUNT = String(s.deadLetter.maxReceiveCount);
  }
  return out;
}

export function desiredReplicatedQueue(cr: CustomResource<ReplicatedQueueSpec>, defaults: OperatorDefaults): ReplicatedQueueChildren {
  const { name, namespace } = cr.metadata;
  const s = cr.spec;
  const settings = queueHostSettings(cr, defaults);
  const configMap = settingsConfigMap(cr, 'queue-host', settings);
  const hash = configHash(configMap.data);
  const labels = commonLabels('queue-host', name);
  const pt = s.podTemplate ?? {};
  const scheduling: Partial<V1PodSpec> = {};
  if (pt.nodeSelector !== undefined) scheduling.nodeSelector = pt.nodeSelector;
  if (pt.tolerations !== undefined) scheduling.tolerations = pt.tolerations as V1PodSpec['tolerations'];
  if (pt.affinity !== undefined) scheduling.affinity = pt.affinity as V1PodSpec['affinity'];
  if (pt.priorityClassName !== undefined) scheduling.priorityClassName = pt.priorityClassName;
  if (pt.imagePullSecrets !== undefined) scheduling.imagePullSecrets = pt.imagePullSecrets;
  const statefulSet: V1StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace, labels, ownerReferences: [ownerReference(cr)] },
    spec: {
      replicas: s.hosts,
      serviceName: name,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: selectorLabels('queue-host', name) },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 0 } },
      template: {
        metadata: {
          labels: { ...(pt.metadata?.labels ?? {}), ...labels },
          annotations: { ...(pt.metadata?.annotations ?? {}), [configHashAnnotation]: hash },
        },
        spec: {
          ...scheduling,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 30,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [sidecarContainer({ component: 'queue-host', settings, overrides: s.sidecar, defaults, native: false })],
          topologySpreadConstraints: (pt.topologySpreadConstraints as V1PodSpec['topologySpreadConstraints']) ?? hostSpread('queue-host', name),
          volumes: sidecarVolumes(defaults),
        },
      },
    },
  };
  return {
    statefulSet,
    service: headlessService(cr, 'queue-host', sidecarPort(s.sidecar)),
    pdb: disruptionBudget(cr, 'queue-host'),
    configMap,
    settings,
    hash,
  };
}
