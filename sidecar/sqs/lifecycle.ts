/**
 * CreateQueue/DeleteQueue beyond the NATS layout (SPEC §2.5), two adapters:
 * - `castellan dev`: the dev process answers requests on
 *   `<prefix>.dev.queues.<namespace>` (local/dev/queue-control.ts) and starts
 *   or stops the queue's host processes; the sidecar waits for its answer.
 * - Kubernetes (in a pod, KUBERNETES_SERVICE_HOST set): the sidecar creates or
 *   deletes the ReplicatedQueue resource in its namespace; the operator does
 *   the rest. A 403 becomes AccessDenied naming the missing RBAC permission.
 * SetQueueAttributes on Kubernetes patches the ReplicatedQueue's spec too, so
 * the operator, which rewrites the config record from it, agrees.
 * Without either, CreateQueue of a new queue is UnsupportedOperation.
 * The Kubernetes client is imported on first use: it is most of an idle
 * sidecar's memory otherwise, and most sidecars never create a queue.
 */
import type * as k8s from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../../common/logger.ts';
import { isNoResponders } from '../nats-errors.ts';
import { sanitizeToken } from '../objects/subjects.ts';
import type { QueueSpec } from '../queues/spec.ts';
import { Sqs } from './errors.ts';

export type DevQueueRequest = { op: 'create'; spec: QueueSpec } | { op: 'delete'; name: string };
export type DevQueueReply = { ok: true } | { ok: false; message: string };

export function devQueueSubject(prefix: string, namespace: string): string {
  return `${prefix}.dev.queues.${sanitizeToken(namespace)}`;
}

export interface Lifecycle {
  create(spec: QueueSpec): Promise<void>;
  delete(name: string): Promise<void>;
  /** Settings changed through SQS: on Kubernetes the ReplicatedQueue is patched (the operator owns the config record). */
  update(spec: QueueSpec): Promise<void>;
}

const DEV_TIMEOUT_MS = 120_000;

function seconds(ms: number): string {
  return `${ms / 1000}s`;
}

/** The ReplicatedQueue resource for a spec (SPEC §3 fields). */
export function replicatedQueueResource(spec: QueueSpec, namespace: string): Record<string, unknown> {
  return {
    apiVersion: 'castellan.dev/v1alpha1',
    kind: 'ReplicatedQueue',
    metadata: { name: spec.name, namespace, labels: { 'castellan.dev/created-by': 'sqs' } },
    spec: { hosts: spec.hosts, ...settings(spec), deletionPolicy: 'Delete' },
  };
}

/** The settable part of a ReplicatedQueue spec; `deadLetter: null` removes it in a merge patch. */
function settings(spec: QueueSpec): Record<string, unknown> {
  return {
    replicaCount: spec.replicaCount,
    visibilityTimeout: seconds(spec.visibilityTimeoutMs),
    messageRetention: seconds(spec.messageRetentionMs),
    maxMessageBytes: spec.maxMessageBytes,
    delay: seconds(spec.delayMs),
    deadLetter: spec.deadLetter ?? null,
  };
}

function statusOf(err: unknown): number | undefined {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

export interface LifecycleOptions {
  /** Where KUBERNETES_SERVICE_HOST is looked up (default process.env): set in a pod. */
  env?: NodeJS.ProcessEnv;
  /** The Kubernetes client configuration (default: in-cluster / KUBECONFIG). */
  kubeConfig?: () => k8s.KubeConfig;
}

export function createLifecycle(nc: NatsConnection, prefix: string, namespace: string, opts: LifecycleOptions = {}): Lifecycle {
  const subject = devQueueSubject(prefix, namespace);
  const env = opts.env ?? process.env;
  let custom: { api: k8s.CustomObjectsApi; lib: typeof k8s } | undefined;
  const kube = async (): Promise<{ api: k8s.CustomObjectsApi; lib: typeof k8s } | undefined> => {
    if (env.KUBERNETES_SERVICE_HOST === undefined) return undefined;
    if (custom === undefined) {
      const lib = await import('@kubernetes/client-node');
      let kc: k8s.KubeConfig;
      if (opts.kubeConfig !== undefined) kc = opts.kubeConfig();
      else {
        kc = new lib.KubeConfig();
        kc.loadFromDefault();
      }
      custom = { api: kc.makeApiClient(lib.CustomObjectsApi), lib };
    }
    return custom;
  };
  const target = { group: 'castellan.dev', version: 'v1alpha1', namespace, plural: 'replicatedqueues' };

  /** Asks castellan dev; undefined when no dev process listens. */
  const dev = async (req: DevQueueRequest): Promise<true | undefined> => {
    let data: Uint8Array;
    try {
      data = (await nc.request(subject, JSON.stringify(req), { timeout: DEV_TIMEOUT_MS })).data;
    } catch (err) {
      if (isNoResponders(err)) return undefined;
      throw Sqs.unavailable(`castellan dev did not answer the ${req.op} of the queue: ${describeError(err)}`, err);
    }
    const reply = JSON.parse(new TextDecoder().decode(data)) as DevQueueReply;
    if (!reply.ok) throw Sqs.invalidParameterValue(reply.message);
    return true;
  };

  const denied = (verb: string, err: unknown) =>
    Sqs.accessDenied(
      `The sidecar's ServiceAccount may not ${verb} replicatedqueues.castellan.dev in namespace "${namespace}" (missing RBAC permission: ${verb} on replicatedqueues in API group castellan.dev). ${describeError(err)}`,
    );

  return {
    async create(spec) {
      if ((await dev({ op: 'create', spec })) === true) return;
      const api = (await kube())?.api;
      if (api === undefined) throw Sqs.unsupported('CreateQueue needs castellan dev or Kubernetes: neither is reachable from this sidecar.');
      try {
        const body = replicatedQueueResource(spec, namespace);
        if (spec.deadLetter === undefined) delete (body.spec as Record<string, unknown>).deadLetter;
        await api.createNamespacedCustomObject({ ...target, body });
      } catch (err) {
        const s = statusOf(err);
        if (s === 403) throw denied('create', err);
        if (s === 409) return;
        if (s === 422) throw Sqs.invalidParameterValue(`The ReplicatedQueue for this queue is not valid (queue names become Kubernetes names; long or mixed-case names may not fit): ${describeError(err)}`);
        throw Sqs.unavailable(`Creating the ReplicatedQueue failed: ${describeError(err)}`, err);
      }
    },
    async update(spec) {
      const k = await kube();
      if (k === undefined) return;
      try {
        await k.api.patchNamespacedCustomObject({ ...target, name: spec.name, body: { spec: settings(spec) } }, k.lib.setHeaderOptions('Content-Type', k.lib.PatchStrategy.MergePatch));
      } catch (err) {
        const s = statusOf(err);
        if (s === 403) throw denied('patch', err);
        if (s === 404) return; // not operator-managed: the config record is the truth
        throw Sqs.unavailable(`Updating the ReplicatedQueue failed: ${describeError(err)}`, err);
      }
    },
    async delete(name) {
      if ((await dev({ op: 'delete', name })) === true) return;
      const api = (await kube())?.api;
      if (api === undefined) throw Sqs.unsupported('DeleteQueue needs castellan dev or Kubernetes: neither is reachable from this sidecar.');
      try {
        await api.deleteNamespacedCustomObject({ ...target, name });
      } catch (err) {
        const s = statusOf(err);
        if (s === 403) throw denied('delete', err);
        if (s === 404) return;
        throw Sqs.unavailable(`Deleting the ReplicatedQueue failed: ${describeError(err)}`, err);
      }
    },
  };
}
