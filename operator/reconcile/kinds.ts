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
import type { Problem, WorkloadView } from '../desired/status.ts';
import { deleteObjectAssets, ensureObjectAssets, objectStreamName } from '../assets/object-assets.ts';
import { readHostRecords, stuckWarnings } from '../assets/object-hosts.ts';
import { objectClassStats } from '../assets/object-stats.ts';
import { deleteQueue, ensureQueue, queueMessageCount, queueMetaStreamName } from '../assets/queue-assets.ts';

export interface Children {
  statefulSet: V1StatefulSet;
  service: V1Service;
  pdb: V1PodDisruptionBudget;
  configMap: V1ConfigMap;
  hash: string;
}

export interface Observation {
  status: Record<string, number>;
  warnings: Problem[];
}

/** A host record older than this says nothing about now (hosts write one every lease TTL / 4). */
const hostRecordMaxAgeMs = 30_000;

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
  /**
   * What the running hosts report over NATS (best effort), when some are ready:
   * extra status fields, and problems to record as Warning Events.
   */
  /** `serviceAccount`: the operator's, the caller it names in calls (common/access.ts). */
  observe?(nc: NatsConnection, prefix: string, cr: CustomResource<S>, log: Logger, serviceAccount: string): Promise<Observation>;
  /** Reconcile a healthy resource again after this long, to refresh what `observe` reads. */
  refreshMs?: number;
}

/** A class stream running with fewer replicas than spec.storage.replicas (too few NATS servers when it was created or moved). */
function replicaWarnings(actual: number | undefined, wanted: number): Problem[] {
  if (actual === undefined || actual >= wanted) return [];
  return [{ reason: 'StreamReplicasReduced', message: `the class stream has ${actual} replica(s), fewer than spec.storage.replicas ${wanted}; it is raised when enough NATS servers are up` }];
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
  async observe(nc, prefix, cr, log): Promise<Observation> {
    const t = { prefix, namespace: cr.metadata.namespace, cls: cr.metadata.name };
    const [s, hosts] = await Promise.all([objectClassStats(nc, t, log), readHostRecords(nc, t, log)]);
    return {
      status: s === undefined ? {} : { approximateObjects: s.approximateObjects, storedBytes: s.storedBytes },
      warnings: [...replicaWarnings(s?.streamReplicas, cr.spec.storage.replicas), ...stuckWarnings(cr.metadata.name, hosts, Date.now(), hostRecordMaxAgeMs)],
    };
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
  async observe(nc, prefix, cr, log, serviceAccount): Promise<Observation> {
    const n = await queueMessageCount(nc, { prefix, namespace: cr.metadata.namespace, queue: cr.metadata.name }, cr.spec.hosts, log, { namespace: cr.metadata.namespace, serviceAccount });
    return { status: n === undefined ? {} : { approximateMessages: n }, warnings: [] };
  },
  refreshMs: 30_000,
};
