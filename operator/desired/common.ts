/**
 * Pieces shared by the desired-state builders: labels, owner references, the
 * config hash, the Castellan sidecar container, the headless Service, the
 * PodDisruptionBudget and the ConfigMap. Pure functions, no I/O.
 */
import { createHash } from 'node:crypto';
import type { V1ConfigMap, V1Container, V1EnvVar, V1OwnerReference, V1PodDisruptionBudget, V1PodSpec, V1Probe, V1Service, V1Volume } from '@kubernetes/client-node';
import { formatAccessCallers, type AccessCaller } from '../../common/access.ts';
import { parseDuration } from '../../common/duration.ts';
import { apiVersion, type CustomResource, type EnvVar, type SidecarOverrides } from '../api/resources.ts';

export const managedBy = 'castellan-operator';
export const fieldManager = 'castellan-operator';
export const configHashAnnotation = 'castellan.dev/config-hash';
export const sidecarContainerName = 'castellan-sidecar';
export const defaultSidecarPort = 3600;
/** The sidecar's admin listener on the pod IP: httpGet probes, /metrics, the app's preStop /drain. */
export const sidecarAdminPort = 3601;
export const sidecarAdminPortName = 'castellan-admin';
/** Labels selecting the pods of a DurableObject / ReplicatedQueue. */
export const classLabel = 'castellan.dev/class';
export const queueLabel = 'castellan.dev/queue';

/** What the operator's own configuration contributes to every child. */
export interface OperatorDefaults {
  natsUrls: string[];
  natsPrefix?: string;
  sidecarImage: string;
  sidecarImagePullPolicy?: string;
  sidecarLogLevel?: string;
  /** Resources of a sidecar whose resource's spec.sidecar.resources is unset (chart value sidecar.resources). */
  sidecarResources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** The operator's own ServiceAccount (its identity when it calls queue hosts, common/access.ts). */
  operatorServiceAccount?: string;
  /**
   * Audience of the projected ServiceAccount token every sidecar presents to
   * NATS (the auth callout's, docs/security.md §2); unset: no token (NATS
   * without the callout).
   */
  sidecarTokenAudience?: string;
}

/** Where the sidecar's NATS token is mounted (CASTELLAN_NATS_SA_TOKEN). */
export const sidecarTokenDir = '/var/run/secrets/castellan';
const tokenVolume = 'castellan-token';
const tmpVolume = 'castellan-tmp';

/**
 * The volumes every pod with a Castellan sidecar needs (the one builder for
 * StatefulSet pods and injected pods): the sidecar's /tmp and, on a secured
 * cluster, its projected ServiceAccount token for the auth callout. The
 * kubelet rotates the token; the sidecar reads it again on every reconnect.
 */
export function sidecarVolumes(defaults: OperatorDefaults): V1Volume[] {
  const out: V1Volume[] = [{ name: tmpVolume, emptyDir: { sizeLimit: '64Mi' } }];
  if (defaults.sidecarTokenAudience !== undefined) {
    out.push({ name: tokenVolume, projected: { sources: [{ serviceAccountToken: { audience: defaults.sidecarTokenAudience, expirationSeconds: 3600, path: 'token' } }] } });
  }
  return out;
}

/** A pod's volumes plus the sidecar's (replacing same-named ones: those names belong to Castellan). */
export function withSidecarVolumes(volumes: V1Volume[] | undefined, defaults: OperatorDefaults): V1Volume[] {
  const ours = sidecarVolumes(defaults);
  const names = new Set(ours.map((v) => v.name));
  return [...(volumes ?? []).filter((v) => !names.has(v.name)), ...ours];
}

export type Component = 'object-host' | 'queue-host';

export function selectorLabels(component: Component, name: string): Record<string, string> {
  return component === 'object-host' ? { [classLabel]: name } : { [queueLabel]: name };
}

export function commonLabels(component: Component, name: string): Record<string, string> {
  return {
    ...selectorLabels(component, name),
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/part-of': 'castellan',
    'app.kubernetes.io/managed-by': managedBy,
  };
}

/** The selector in string form (status.selector, for the scale subresource). */
export function selectorString(component: Component, name: string): string {
  return Object.entries(selectorLabels(component, name))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function ownerReference(cr: CustomResource): V1OwnerReference {
  return { apiVersion, kind: cr.kind, name: cr.metadata.name, uid: cr.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** A short, stable hash of a JSON value (object keys sorted). */
export function configHash(value: unknown): string {
  return createHash('sha256').update(stableJson(value)).digest('hex').slice(0, 16);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Merges env lists by name: later lists win; order of first appearance is kept. */
export function mergeEnv(...lists: (readonly (V1EnvVar | EnvVar)[] | undefined)[]): V1EnvVar[] {
  const out = new Map<string, V1EnvVar>();
  for (const list of lists) for (const e of list ?? []) out.set(e.name, e as V1EnvVar);
  return [...out.values()];
}

/** Env names the operator owns in the sidecar: a user's spec.sidecar.env cannot replace them. */
const reservedSidecarEnv = new Set(['POD_NAME', 'POD_NAMESPACE', 'CASTELLAN_SERVICE_ACCOUNT', 'CASTELLAN_ACCESS_CALLERS', 'CASTELLAN_ROLE', 'CASTELLAN_CLASS', 'CASTELLAN_QUEUE', 'CASTELLAN_HTTP_PORT', 'CASTELLAN_HTTP_HOST', 'CASTELLAN_ADMIN_PORT', 'CASTELLAN_ADMIN_HOST']);

export interface SidecarInput {
  /** 'client': the sidecar the admission webhook adds to caller pods (operator/webhook/inject.ts). */
  component: Component | 'client';
  /** Settings given as plain env values (also stored in the ConfigMap and hashed). */
  settings: Record<string, string>;
  overrides: SidecarOverrides | undefined;
  defaults: OperatorDefaults;
  /** Native sidecar (init container, restartPolicy Always) for object hosts; main container for queue hosts. */
  native: boolean;
}

export function sidecarPort(overrides: SidecarOverrides | undefined): number {
  return overrides?.httpPort ?? defaultSidecarPort;
}

/**
 * An httpGet probe on the sidecar's admin port (pod IP). The object and queue
 * API stays on loopback (SPEC §1); the admin listener serves only health,
 * metrics and drain, so the kubelet probes it without starting a process.
 */
export function adminProbe(path: '/healthz' | '/readyz', periodSeconds: number, failureThreshold: number): V1Probe {
  return { httpGet: { path, port: sidecarAdminPortName, scheme: 'HTTP' }, periodSeconds, timeoutSeconds: 3, failureThreshold };
}

/**
 * The app container's preStop hook: asks the sidecar to hand this pod's
 * objects over and answers when it has, so the app gets SIGTERM only once no
 * call can reach it (otherwise the app stops first and calls in flight fail).
 * A user's own preStop hook is kept.
 */
export function drainHook(): NonNullable<V1Container['lifecycle']> {
  return { preStop: { httpGet: { path: '/drain', port: sidecarAdminPort, scheme: 'HTTP' } } };
}

/**
 * The object-host pod's termination grace period unless the user's template
 * sets one: the preStop drain keeps an object whose handler still runs up to
 * the longer of turnTimeout and the sidecar's request timeout (30 s), then
 * releases it and leaves; 30 s more covers that, the app's exit and the
 * sidecar's own stop. Kubernetes' default of 30 s would cut a drain short and
 * kill the app under a running turn.
 */
export function drainGraceSeconds(turnTimeout: string): number {
  const turnMs = parseDuration(turnTimeout) ?? 60_000;
  return Math.ceil(Math.max(turnMs, 30_000) / 1000) + 30;
}

/** Spread a StatefulSet's hosts over nodes (soft), unless the user's template says how. */
export function hostSpread(component: Component, name: string): NonNullable<V1PodSpec['topologySpreadConstraints']> {
  return [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: selectorLabels(component, name) } }];
}

/** The Castellan sidecar container with its environment, probes and a hardened security context. */
export function sidecarContainer(input: SidecarInput): V1Container {
  const { overrides, defaults } = input;
  const port = sidecarPort(overrides);
  const fixed: V1EnvVar[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
    // The caller identity its calls carry (common/access.ts); the auth callout holds it to the pod's token.
    { name: 'CASTELLAN_SERVICE_ACCOUNT', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.serviceAccountName' } } },
    { name: 'CASTELLAN_HTTP_PORT', value: String(port) },
    { name: 'CASTELLAN_ADMIN_PORT', value: String(sidecarAdminPort) },
    ...(defaults.sidecarTokenAudience !== undefined ? [{ name: 'CASTELLAN_NATS_SA_TOKEN', value: `${sidecarTokenDir}/token` }] : []),
  ];
  const settings = Object.entries(input.settings).map(([name, value]) => ({ name, value }));
  const user = (overrides?.env ?? []).filter((e) => !reservedSidecarEnv.has(e.name));
  const container: V1Container = {
    name: sidecarContainerName,
    image: overrides?.image ?? defaults.sidecarImage,
    command: ['castellan', 'sidecar'],
    env: mergeEnv(fixed, settings, user),
    ports: [
      { name: 'castellan', containerPort: port, protocol: 'TCP' },
      { name: sidecarAdminPortName, containerPort: sidecarAdminPort, protocol: 'TCP' },
    ],
    startupProbe: adminProbe('/healthz', 1, 60),
    livenessProbe: adminProbe('/healthz', 10, 3),
    readinessProbe: adminProbe('/readyz', 2, 2),
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: tmpVolume, mountPath: '/tmp' },
      ...(defaults.sidecarTokenAudience !== undefined ? [{ name: tokenVolume, mountPath: sidecarTokenDir, readOnly: true }] : []),
    ],
  };
  const pull = overrides?.imagePullPolicy ?? defaults.sidecarImagePullPolicy;
  if (pull !== undefined) container.imagePullPolicy = pull;
  const resources = overrides?.resources ?? defaults.sidecarResources;
  if (resources !== undefined) container.resources = resources as V1Container['resources'];
  if (input.native) container.restartPolicy = 'Always';
  return container;
}

/** Sidecar settings shared by both roles (NATS, log level). */
export function natsSettings(nats: { urls?: string[]; prefix?: string } | undefined, overrides: SidecarOverrides | undefined, defaults: OperatorDefaults): Record<string, string> {
  const out: Record<string, string> = { CASTELLAN_NATS_URL: (nats?.urls ?? defaults.natsUrls).join(',') };
  const prefix = nats?.prefix ?? defaults.natsPrefix;
  if (prefix !== undefined && prefix !== '') out.CASTELLAN_NATS_PREFIX = prefix;
  const level = overrides?.logLevel ?? defaults.sidecarLogLevel;
  if (level !== undefined) out.CASTELLAN_LOG_LEVEL = level;
  return out;
}

/** Who may call the resource besides its namespace (spec.access.callers), for its hosts to enforce (common/access.ts). */
export function accessSettings(access: { callers?: AccessCaller[] } | undefined): Record<string, string> {
  const callers = formatAccessCallers(access?.callers);
  return callers === '' ? {} : { CASTELLAN_ACCESS_CALLERS: callers };
}

export function headlessService(cr: CustomResource, component: Component, port: number): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: cr.metadata.name, namespace: cr.metadata.namespace, labels: commonLabels(component, cr.metadata.name), ownerReferences: [ownerReference(cr)] },
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: selectorLabels(component, cr.metadata.name),
      ports: [{ name: 'castellan', port, targetPort: 'castellan', protocol: 'TCP' }],
    },
  };
}

export function disruptionBudget(cr: CustomResource, component: Component): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: {
      name: cr.metadata.name,
      namespace: cr.metadata.namespace,
      labels: commonLabels(component, cr.metadata.name),
      ownerReferences: [ownerReference(cr)],
    },
    spec: {
      // One host at a time: its objects (or messages' replicas) move to the others.
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(component, cr.metadata.name) },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}

/** Name of the ConfigMap holding a resource's sidecar settings. */
export function configMapName(name: string): string {
  return `${name}-castellan`;
}

export function settingsConfigMap(cr: CustomResource, component: Component, settings: Record<string, string>): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: configMapName(cr.metadata.name),
      namespace: cr.metadata.namespace,
      labels: commonLabels(component, cr.metadata.name),
      ownerReferences: [ownerReference(cr)],
    },
    data: { ...settings },
  };
}
