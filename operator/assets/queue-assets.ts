/**
 * JetStream assets of a ReplicatedQueue: the operator hands the spec to the
 * queue engine's own declarative functions (sidecar/queues/assets.ts), so the
 * operator, the queue hosts and `castellan dev` create the same streams and
 * config record.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { CallerIdentity } from '../../common/access.ts';
import { parseDuration } from '../../common/duration.ts';
import type { Logger } from '../../common/logger.ts';
import { describeError } from '../../common/logger.ts';
import { deleteQueueAssets, ensureQueueAssets } from '../../sidecar/queues/assets.ts';
import { queueNames } from '../../sidecar/queues/names.ts';
import { hostPods, type QueueSpec } from '../../sidecar/queues/spec.ts';
import { decodeJson, encodeJson, type HostReply } from '../../sidecar/queues/wire.ts';
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

/**
 * Approximate number of messages (visible, in flight and delayed), summed from the `stats`
 * request each queue host answers over NATS (the same one GET /v1/queues/{queue} uses; each
 * message is counted by the one host that holds its visible copy). Undefined when no host answered.
 * `caller`: the operator as a member of the queue's namespace (an admin of the auth callout acts as one).
 */
export async function queueMessageCount(nc: NatsConnection, t: QueueTarget, hosts: number, log: Logger, caller: CallerIdentity, timeoutMs = 2_000): Promise<number | undefined> {
  const n = queueNames(t.prefix, t.namespace, t.queue);
  const counts = await Promise.all(
    hostPods({ name: t.queue, hosts }).map(async (pod) => {
      try {
        const m = await nc.request(n.rpc(pod, caller), encodeJson({ op: 'stats' }), { timeout: timeoutMs });
        const reply = decodeJson<HostReply>(m.data);
        if (!reply.ok || reply.stats === undefined) return undefined;
        return reply.stats.visible + reply.stats.inFlight + reply.stats.delayed;
      } catch (err) {
        log.debug('queue host did not answer stats', { queue: t.queue, host: pod, error: describeError(err) });
        return undefined;
      }
    }),
  );
  const answered = counts.filter((c): c is number => c !== undefined);
  return answered.length === 0 ? undefined : answered.reduce((a, b) => a + b, 0);
}
