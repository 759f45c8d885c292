/**
 * DurableObject → desired children (pure): a StatefulSet of object hosts (the
 * user's pod template plus the Castellan sidecar as a native sidecar), a
 * headless Service, a PodDisruptionBudget and a ConfigMap with the sidecar
 * settings, all owned by the DurableObject. A change of the settings changes
 * the config-hash annotation of the pod template, which rolls the pods. The
 * app's preStop hook drains the sidecar, within a grace period sized for it.
 */
import type { V1ConfigMap, V1Container, V1PodDisruptionBudget, V1PodSpec, V1Service, V1StatefulSet, V1Volume } from '@kubernetes/client-node';
import type { CustomResource, DurableObjectSpec } from '../api/resources.ts';
import {
  commonLabels,
  configHash,
  configHashAnnotation,
  disruptionBudget,
  drainGraceSeconds,
  drainHook,
  headlessService,
  hostSpread,
  mergeEnv,
  natsSettings,
  accessSettings,
  ownerReference,
  selectorLabels,
  settingsConfigMap,
  sidecarContainer,
  sidecarContainerName,
  sidecarPort,
  withSidecarVolumes,
  type OperatorDefaults,
} from './common.ts';

export interface DurableObjectChildren {
  statefulSet: V1StatefulSet;
  service: V1Service;
  pdb: V1PodDisruptionBudget;
  configMap: V1ConfigMap;
  /** The settings given to the sidecar (CASTELLAN_* env). */
  settings: Record<string, string>;
  hash: string;
}

/** The object-host sidecar's settings for this class (everything but the per-pod env). */
export function objectHostSettings(cr: CustomResource<DurableObjectSpec>, defaults: OperatorDefaults): Record<string, string> {
  const s = cr.spec;
  return {
    CASTELLAN_ROLE: 'object-host',
    CASTELLAN_CLASS: cr.metadata.name,
    CASTELLAN_APP_PORT: String(s.appPort),
    ...natsSettings(s.nats, s.sidecar, defaults),
    ...accessSettings(s.access),
    CASTELLAN_CONCURRENCY: s.concurrency,
    CASTELLAN_IDLE_TIMEOUT: s.idleTimeout,
    CASTELLAN_TURN_TIMEOUT: s.turnTimeout,
    CASTELLAN_STORAGE_REPLICAS: String(s.storage.replicas),
  };
}

export function desiredDurableObject(cr: CustomResource<DurableObjectSpec>, defaults: OperatorDefaults): DurableObjectChildren {
  const { name, namespace } = cr.metadata;
  const s = cr.spec;
  const settings = objectHostSettings(cr, defaults);
  const configMap = settingsConfigMap(cr, 'object-host', settings);
  const hash = configHash(configMap.data);
  const port = sidecarPort(s.sidecar);

  const userSpec = s.template.spec as unknown as V1PodSpec;
  const appEnv = [
    { name: 'PORT', value: String(s.appPort) },
    { name: 'CASTELLAN_SIDECAR_URL', value: `http://127.0.0.1:${port}` },
  ];
  // The app's preStop hook drains the sidecar first (a user's own preStop hook is kept).
  const containers: V1Container[] = userSpec.containers.map((c) => ({
    ...c,
    env: mergeEnv(c.env, appEnv),
    ...(c.lifecycle?.preStop === undefined ? { lifecycle: { ...(c.lifecycle ?? {}), ...drainHook() } } : {}),
  }));
  const sidecar = sidecarContainer({ component: 'object-host', settings, overrides: s.sidecar, defaults, native: true });
  // First, so that the user's own init containers and the app start once the sidecar is up (its startup probe).
  const initContainers = [sidecar, ...(userSpec.initContainers ?? []).filter((c) => c.name !== sidecarContainerName)];
  const volumes: V1Volume[] = withSidecarVolumes(userSpec.volumes as V1Volume[] | undefined, defaults);

  const labels = { ...(s.template.metadata?.labels ?? {}), ...commonLabels('object-host', name) };
  const statefulSet: V1StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace, labels: commonLabels('object-host', name), ownerReferences: [ownerReference(cr)] },
    spec: {
      replicas: s.replicas,
      serviceName: name,
      // Hosts are interchangeable: start and stop them all at once.
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: selectorLabels('object-host', name) },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 0 } },
      template: {
        metadata: {
          labels,
          annotations: { ...(s.template.metadata?.annotations ?? {}), [configHashAnnotation]: hash },
        },
        spec: {
          ...userSpec,
          containers,
          initContainers,
          volumes,
          topologySpreadConstraints: userSpec.topologySpreadConstraints ?? hostSpread('object-host', name),
          terminationGracePeriodSeconds: userSpec.terminationGracePeriodSeconds ?? drainGraceSeconds(s.turnTimeout),
        },
      },
    },
  };
  return {
    statefulSet,
    service: headlessService(cr, 'object-host', port),
    pdb: disruptionBudget(cr, 'object-host'),
    configMap,
    settings,
    hash,
  };
}
