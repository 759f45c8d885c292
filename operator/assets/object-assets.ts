/**
 * JetStream assets of a DurableObject class: its class stream (ownership
 * records, host leases and storage; layout in sidecar/objects/subjects.ts).
 * Created through the sidecar's own ObjectStore.ensureStream, so the operator
 * and the hosts agree on the stream's configuration; the operator also keeps
 * the stream's replicas equal to spec.storage.replicas (capped by the cluster)
 * and deletes the stream for deletionPolicy Delete.
 */
import { jetstreamManager, JetStreamApiError } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { ObjectStore } from '../../sidecar/objects/ownership-store.ts';
import { classNames } from '../../sidecar/objects/subjects.ts';

const JS_STREAM_NOT_FOUND = 10059;

export interface ObjectClassTarget {
  prefix: string;
  namespace: string;
  cls: string;
}

export interface ObjectAssetsState {
  stream: string;
  replicas: number;
}

/** Creates the class stream if missing and moves it to `replicas` when it has another count. */
export async function ensureObjectAssets(nc: NatsConnection, t: ObjectClassTarget, replicas: number, log: Logger): Promise<ObjectAssetsState> {
  const store = new ObjectStore(nc, { prefix: t.prefix, namespace: t.namespace, timeoutMs: 15_000, log });
  await store.ensureStream(t.cls, replicas);
  const stream = classNames(t.prefix, t.namespace, t.cls).stream;
  const jsm = await jetstreamManager(nc, { timeout: 15_000, checkAPI: false });
  const info = await jsm.streams.info(stream);
  const current = info.config.num_replicas;
  if (current !== replicas) {
    const servers = 1 + (info.cluster?.replicas?.length ?? 0);
    try {
      await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
      log.info('changed object stream replicas', { stream, from: current, to: replicas });
      return { stream, replicas };
    } catch (err) {
      // A cluster with fewer servers than requested keeps what it can place (as ensureStream does).
      log.warn('could not change object stream replicas', { stream, from: current, to: replicas, servers, error: describeError(err) });
    }
  }
  return { stream, replicas: current };
}

/** Deletes the class stream; false when it did not exist. */
export async function deleteObjectAssets(nc: NatsConnection, t: ObjectClassTarget, log: Logger): Promise<boolean> {
  const stream = classNames(t.prefix, t.namespace, t.cls).stream;
  const jsm = await jetstreamManager(nc, { timeout: 15_000, checkAPI: false });
  try {
    await jsm.streams.delete(stream);
    log.info('deleted object stream', { stream });
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JS_STREAM_NOT_FOUND) return false;
    throw err;
  }
}

export function objectStreamName(t: ObjectClassTarget): string {
  return classNames(t.prefix, t.namespace, t.cls).stream;
}
