/**
 * The operator's Kubernetes calls, in one thin adapter: server-side apply of
 * children (field manager `castellan-operator`, forced, so a field someone
 * edited is put back), deletes, status and finalizer patches of the custom
 * resources, list functions and watch paths for the informers.
 */
import * as k8s from '@kubernetes/client-node';
import { group, kinds, version, type CustomResource, type KindName } from '../api/resources.ts';
import { fieldManager, managedBy } from '../desired/common.ts';

export const childSelector = `app.kubernetes.io/managed-by=${managedBy}`;

export type ChildKind = 'StatefulSet' | 'Service' | 'ConfigMap' | 'PodDisruptionBudget';

interface ChildApi {
  apiVersion: string;
  /** Watch path prefix and suffix around an optional `namespaces/<ns>/`. */
  base: string;
  plural: string;
}

export const childApis: Record<ChildKind, ChildApi> = {
  StatefulSet: { apiVersion: 'apps/v1', base: '/apis/apps/v1', plural: 'statefulsets' },
  Service: { apiVersion: 'v1', base: '/api/v1', plural: 'services' },
  ConfigMap: { apiVersion: 'v1', base: '/api/v1', plural: 'configmaps' },
  PodDisruptionBudget: { apiVersion: 'policy/v1', base: '/apis/policy/v1', plural: 'poddisruptionbudgets' },
};

export function watchPath(base: string, plural: string, namespace: string | undefined): string {
  return namespace === undefined ? `${base}/${plural}` : `${base}/namespaces/${namespace}/${plural}`;
}

export function crWatchPath(kind: KindName, namespace: string | undefined): string {
  return watchPath(`/apis/${group}/${version}`, kinds[kind].plural, namespace);
}

/** HTTP status of an API error (client-node 2.x ApiException has `code`). */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** The API server's message of an error, when it sent a Status. */
export function apiMessage(err: unknown): string {
  const e = err as { body?: unknown; message?: string };
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      // not JSON
    }
  }
  if (body !== null && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') return (body as { message: string }).message;
  return e.message ?? String(err);
}

export class Kube {
  readonly kc: k8s.KubeConfig;
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly core: k8s.CoreV1Api;
  private readonly apps: k8s.AppsV1Api;
  private readonly policy: k8s.PolicyV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.kc = kc;
    this.objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.policy = kc.makeApiClient(k8s.PolicyV1Api);
  }

  /** Server-side apply of a child; returns the object as stored. */
  async apply<T extends k8s.KubernetesObject>(obj: T): Promise<T> {
    return this.objects.patch(obj, undefined, undefined, fieldManager, true, k8s.PatchStrategy.ServerSideApply);
  }

  async deleteChild(kind: ChildKind, namespace: string, name: string, propagationPolicy: 'Foreground' | 'Background' = 'Background'): Promise<void> {
    try {
      await this.objects.delete({ apiVersion: childApis[kind].apiVersion, kind, metadata: { name, namespace } }, undefined, undefined, undefined, undefined, propagationPolicy);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** JSON merge patch of a custom resource's status subresource. */
  async patchStatus(kind: KindName, cr: CustomResource, status: Record<string, unknown>): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      { group, version, namespace: cr.metadata.namespace, plural: kinds[kind].plural, name: cr.metadata.name, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  /** Sets metadata.finalizers, guarded by the resourceVersion read (409 when it changed meanwhile). */
  async setFinalizers(kind: KindName, cr: CustomResource, finalizers: string[]): Promise<void> {
    await this.custom.patchNamespacedCustomObject(
      {
        group,
        version,
        namespace: cr.metadata.namespace,
        plural: kinds[kind].plural,
        name: cr.metadata.name,
        body: { metadata: { finalizers, resourceVersion: cr.metadata.resourceVersion } },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  listCustom(kind: KindName, namespace: string | undefined): () => Promise<k8s.KubernetesListObject<CustomResource>> {
    const plural = kinds[kind].plural;
    return async () =>
      (namespace === undefined
        ? await this.custom.listClusterCustomObject({ group, version, plural })
        : await this.custom.listNamespacedCustomObject({ group, version, namespace, plural })) as k8s.KubernetesListObject<CustomResource>;
  }

  listChildren(kind: ChildKind, namespace: string | undefined): () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> {
    const labelSelector = childSelector;
    switch (kind) {
      case 'StatefulSet':
        return () => (namespace === undefined ? this.apps.listStatefulSetForAllNamespaces({ labelSelector }) : this.apps.listNamespacedStatefulSet({ namespace, labelSelector }));
      case 'Service':
        return () => (namespace === undefined ? this.core.listServiceForAllNamespaces({ labelSelector }) : this.core.listNamespacedService({ namespace, labelSelector }));
      case 'ConfigMap':
        return () => (namespace === undefined ? this.core.listConfigMapForAllNamespaces({ labelSelector }) : this.core.listNamespacedConfigMap({ namespace, labelSelector }));
      case 'PodDisruptionBudget':
        return () =>
          namespace === undefined
            ? this.policy.listPodDisruptionBudgetForAllNamespaces({ labelSelector })
            : this.policy.listNamespacedPodDisruptionBudget({ namespace, labelSelector });
    }
  }

  async createEvent(event: k8s.CoreV1Event): Promise<void> {
    await this.core.createNamespacedEvent({ namespace: event.metadata.namespace ?? 'default', body: event });
  }

  /** Whether the API server answers (for /readyz). */
  async ping(): Promise<void> {
    await this.custom.getAPIResources({ group, version });
  }
}
