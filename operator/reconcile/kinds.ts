/**
 * What differs between DurableObject and ReplicatedQueue for the reconciler:
 * spec schema, desired children, JetStream assets, status fields.
 */
import type { V1ConfigMap, V1PodDisruptionBudget, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { Logger } from '../../common/logger.ts';
import {
  durableObjectSpecSchema,
  replicatedQueueSpecSchema,
  type CustomResource,
  type DurableObjectSpec,
  type KindName,
  type ReplicatedQueueSpec,
} from '../api/resources.ts';
import type { Component, OperatorDefaults } from '../desired/common.ts';
import { desiredDurableObject } from '../desired/durable-object.ts';
import { desiredReplicatedQueue } from '../desired/replicated-queue.ts';
import type { WorkloadView } from '../desired/status.ts';
import { deleteObjectAssets, ensureObjectAssets, objectStreamName } from '../assets/object-assets.ts';
import { objectClassStats } from '../assets/object-stats.ts';
import { deleteQueue, ensureQueue, queueMessageCount, queueMetaStreamName } from '../assets/queue-assets.ts';

export interface Children {
  statefulSet: V1StatefulSet;
  service: V1Service;
  pdb: V1PodDisruptionBudget;
  configMap: V1ConfigMap;
  hash: string;
}

export interface KindHandler<S> {
  kind: KindName;
  component: Component;
  unit: 'replicas' | 'hosts';
  schema: z.ZodType<S>;
  desired(cr: CustomResource<S>, defaults: OperatorDefaults): Children;
  desiredCount(spec: S): number;
  nats(spec: S): { urls?: string[]; prefix?: string } | undefined;
  deletionPolicy(spec: S): 'Retain' | 'Delete';
  /** Creates/updates the JetStream assets; returns a description for logs and events. */
  ensureAssets(nc: NatsConnection, prefix: string, cr: CustomResource<S>, log: Logger): Promise<string>;
  deleteAssets(nc: NatsConnection, prefix: string, cr: CustomResource<S>, log: Logger): Promise<void>;
  assetName(prefix: string, cr: CustomResource<S>): string;
  statusCounts(view: WorkloadView | undefined): Record<string, number>;
  /** Extra status fields read from the running hosts over NATS (best effort), when some are ready. */
  /** `serviceAccount`: the operator's, the caller it names in calls (common/access.ts). */
  observe?(nc: NatsConnection, prefix: string, cr: CustomResource<S>, log: Logger, serviceAccount: string): Promise<Record<string, number>>;
  /** Reconcile a healthy resource again after this long, to refresh what `observe` reads. */
  refreshMs?: number;
}

export const durableObjectHandler: KindHandler<DurableObjectSpec> = {
  kind: 'DurableObject',
  component: 'object-host',
  unit: 'replicas',
  schema: durableObjectSpecSchema,
  desired: desiredDurableObject,
  desiredCount: (s) => s.replicas,
  nats: (s) => s.nats,
  deletionPolicy: (s) => s.deletionPolicy,
  async ensureAssets(nc, prefix, cr, log) {
    const r = await ensureObjectAssets(nc, { prefix, namespace: cr.metadata.namespace, cls: cr.metadata.name }, cr.spec.storage.replicas, log);
    return `stream ${r.stream} (R${r.replicas})`;
  },
  async deleteAssets(nc, prefix, cr, log) {
    await deleteObjectAssets(nc, { prefix, namespace: cr.metadata.namespace, cls: cr.metadata.name }, log);
  },
  assetName: (prefix, cr) => `stream ${objectStreamName({ prefix, namespace: cr.metadata.namespace, cls: cr.metadata.name })}`,
  statusCounts: (v) => ({ replicas: v?.replicas ?? 0, readyReplicas: v?.ready ?? 0 }),
  /** Object count and stored bytes of the class (assets/object-stats.ts), refreshed every 30 s. */
  async observe(nc, prefix, cr, log): Promise<Record<string, number>> {
    const s = await objectClassStats(nc, { prefix, namespace: cr.metadata.namespace, cls: cr.metadata.name }, log);
    return s === undefined ? {} : { approximateObjects: s.approximateObjects, storedBytes: s.storedBytes };
  },
  refreshMs: 30_000,
};

export const replicatedQueueHandler: KindHandler<ReplicatedQueueSpec> = {
  kind: 'ReplicatedQueue',
  component: 'queue-host',
  unit: 'hosts',
  schema: replicatedQueueSpecSchema,
  desired: desiredReplicatedQueue,
  desiredCount: (s) => s.hosts,
  nats: (s) => s.nats,
  deletionPolicy: (s) => s.deletionPolicy,
  async ensureAssets(nc, prefix, cr, log) {
    await ensureQueue(nc, { prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name }, cr.spec, log);
    return `streams of queue ${cr.metadata.name} (meta ${queueMetaStreamName({ prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name })}, ${cr.spec.hosts} host streams)`;
  },
  async deleteAssets(nc, prefix, cr, log) {
    await deleteQueue(nc, { prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name }, log);
  },
  assetName: (prefix, cr) => `streams of queue ${cr.metadata.name} (${queueMetaStreamName({ prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name })} and host streams)`,
  statusCounts: (v) => ({ hosts: v?.replicas ?? 0, readyHosts: v?.ready ?? 0 }),
  async observe(nc, prefix, cr, log, serviceAccount): Promise<Record<string, number>> {
    const n = await queueMessageCount(nc, { prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name }, cr.spec.hosts, log, { namespace: cr.metadata.namespace, serviceAccount });
    return n === undefined ? {} : { approximateMessages: n };
  },
  refreshMs: 30_000,
};
