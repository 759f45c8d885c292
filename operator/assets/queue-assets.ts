/**
 * JetStream assets of a ReplicatedQueue: the operator hands the spec to the
 * queue engine's own declarative functions (sidecar/queues/assets.ts), so the
 * operator, the queue hosts and `castellan dev` create the same streams and
 * config record.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { parseDuration } from '../../common/duration.ts';
import type { Logger } from '../../common/logger.ts';
import { deleteQueueAssets, ensureQueueAssets } from '../../sidecar/queues/assets.ts';
import { queueNames } from '../../sidecar/queues/names.ts';
import type { QueueSpec } from '../../sidecar/queues/spec.ts';
import type { ReplicatedQueueSpec } from '../api/resources.ts';

export interface QueueTarget {
  prefix: string;
  namespace: string;
  queue: string;
}

function ms(text: string, field: string): number {
  const v = parseDuration(text);
  if (v === undefined) throw new Error(`spec.${field}: "${text}" is not a duration`);
  return v;
}

/** The queue engine's view of a ReplicatedQueue spec. */
export function queueSpecOf(queue: string, s: ReplicatedQueueSpec): QueueSpec {
  return {
    name: queue,
    hosts: s.hosts,
    replicaCount: s.replicaCount,
    visibilityTimeoutMs: ms(s.visibilityTimeout, 'visibilityTimeout'),
    messageRetentionMs: ms(s.messageRetention, 'messageRetention'),
    maxMessageBytes: s.maxMessageBytes,
    delayMs: ms(s.delay, 'delay'),
    ...(s.deadLetter === undefined ? {} : { deadLetter: { queue: s.deadLetter.queue, maxReceiveCount: s.deadLetter.maxReceiveCount } }),
  };
}

export async function ensureQueue(nc: NatsConnection, t: QueueTarget, s: ReplicatedQueueSpec, log: Logger): Promise<void> {
  await ensureQueueAssets(nc, { prefix: t.prefix, namespace: t.namespace }, queueSpecOf(t.queue, s), { by: 'operator', log });
}

export async function deleteQueue(nc: NatsConnection, t: QueueTarget, log: Logger): Promise<void> {
  await deleteQueueAssets(nc, { prefix: t.prefix, namespace: t.namespace }, t.queue, { log });
}

export function queueMetaStreamName(t: QueueTarget): string {
  return queueNames(t.prefix, t.namespace, t.queue).metaStream;
}
