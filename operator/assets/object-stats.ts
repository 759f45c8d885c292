/**
 * What the operator reports about a DurableObject class's data (status
 * fields `approximateObjects` and `storedBytes`, and the per-class gauges),
 * read from its class stream without reading any object's data:
 * - objects: the number of index subjects (sidecar/listing/layout.ts) — one
 *   per object with storage or an alarm — counted by the server as the
 *   pending count of a short-lived last-per-subject consumer. Approximate: an
 *   object deleted in the last hour still has its (expiring) tombstone, and
 *   objects written before the index existed are missing until written again.
 * - storedBytes: the bytes the class stream holds on one replica (keys,
 *   values, headers, ownership records): what the class costs in JetStream.
 */
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { indexNames } from '../../sidecar/listing/layout.ts';
import { classNames } from '../../sidecar/objects/subjects.ts';
import type { ObjectClassTarget } from './object-assets.ts';

export interface ObjectClassStats {
  approximateObjects: number;
  storedBytes: number;
  /** Replicas the class stream has now. */
  streamReplicas: number;
}

export async function objectClassStats(nc: NatsConnection, t: ObjectClassTarget, log: Logger): Promise<ObjectClassStats | undefined> {
  const names = classNames(t.prefix, t.namespace, t.cls);
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
    const info = await jsm.streams.info(names.stream);
    const ci = await jsm.consumers.add(names.stream, {
      filter_subject: indexNames(names).all,
      deliver_policy: DeliverPolicy.LastPerSubject,
      ack_policy: AckPolicy.None,
      inactive_threshold: nanos(30_000),
      mem_storage: true,
      num_replicas: 1,
    });
    await jsm.consumers.delete(names.stream, ci.name).catch(() => undefined);
    return { approximateObjects: ci.num_pending, storedBytes: info.state.bytes, streamReplicas: info.config.num_replicas };
  } catch (err) {
    log.debug('reading object class stats failed', { cls: t.cls, error: describeError(err) });
    return undefined;
  }
}
