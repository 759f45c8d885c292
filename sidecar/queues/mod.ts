/**
 * Replicated queues in the sidecar: what sidecar.ts needs to wire them.
 * Every role gets the caller side (QueueClient + routes); the queue-host role
 * also ensures its queue's assets, writes the config record, starts its lease
 * and runs a QueueHost for its queue.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Router as ExpressRouter } from 'express';
import type { Registry } from 'prom-client';
import type { AccessPolicy, CallerIdentity } from '../../common/access.ts';
import { RemoteQueues } from '../access/remote-queues.ts';
import { QueueDoor } from './door.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { defaultMargin, type LeaseTiming } from '../objects/lease.ts';
import { ensureQueueAssets, writeQueueConfig } from './assets.ts';
import { QueueClient } from './client.ts';
import { QueueHost } from './host.ts';
import { HostHeartbeat } from '../leases/heartbeat.ts';
import type { HostRecord } from '../objects/lease.ts';
import { createQueueMetrics } from './metrics.ts';
import { queueRoutes } from './routes.ts';
import type { QueueSpec } from './spec.ts';

export { ensureQueueAssets, deleteQueueAssets } from './assets.ts';
export type { QueueSpec } from './spec.ts';

export interface QueuesConfig {
  prefix: string;
  namespace: string;
  pod: string;
  leaseTtlMs: number;
  requestTimeoutMs: number;
  unavailableWaitMs: number;
  /** This sidecar's identity as a caller (common/access.ts). */
  caller: CallerIdentity;
  /** Who may call the queue this sidecar hosts (queue hosts). */
  access: AccessPolicy;
  /** Present on queue hosts: the queue this host serves. */
  host?: QueueSpec;
}

export interface Queues {
  routes: ExpressRouter;
  /** The caller side, for other surfaces built on the queue API (the SQS API). */
  client: QueueClient;
  readiness: Record<string, () => Promise<true | string> | true | string>;
  stop(): Promise<void>;
}

export async function startQueues(nc: NatsConnection, registry: Registry, cfg: QueuesConfig, log: Logger): Promise<Queues> {
  const timing: LeaseTiming = { ttl: cfg.leaseTtlMs, margin: defaultMargin(cfg.leaseTtlMs) };
  const metrics = createQueueMetrics(registry);
  const client = new QueueClient(
    nc,
    metrics,
    { prefix: cfg.prefix, namespace: cfg.namespace, timing, requestTimeoutMs: cfg.requestTimeoutMs, unavailableWaitMs: cfg.unavailableWaitMs, caller: cfg.caller },
    log.child({ component: 'queues.client' }),
  );
  const readiness: Queues['readiness'] = {};
  let host: QueueHost | undefined;
  let heartbeat: HostHeartbeat | undefined;
  let door: QueueDoor | undefined;
  if (cfg.host !== undefined) {
    const spec = cfg.host;
    const hlog = log.child({ component: 'queues.host', queue: spec.name });
    const target = { prefix: cfg.prefix, namespace: cfg.namespace };
    for (let attempt = 1; ; attempt++) {
      try {
        await ensureQueueAssets(nc, target, spec, { pods: [cfg.pod], by: cfg.pod, keepExistingConfig: true, log: hlog });
        break;
      } catch (err) {
        if (attempt >= 30) throw err;
        hlog.warn('creating the queue streams failed; retrying', { error: describeError(err), attempt });
        await sleep(500);
      }
    }
    const ctx = await client.queue(spec.name);
    if (JSON.stringify(ctx.spec) !== JSON.stringify(spec)) {
      hlog.info('updating the queue config record from this host’s settings', { was: ctx.spec, now: spec });
      await writeQueueConfig(nc, target, spec, cfg.pod);
      ctx.spec = spec;
    }
    const ref: { host?: QueueHost } = {};
    const store = ctx.store;
    heartbeat = new HostHeartbeat(
      { read: (p) => store.last<HostRecord>(store.names.host(p)), write: (p, seq, record) => store.cas(store.names.host(p), record, seq) },
      { pod: cfg.pod, timing, startAttempts: 40 },
      { onFenced: () => ref.host?.onFenced(), onWritten: (seq, record) => ctx.view.observe(seq, record) },
      hlog,
    );
    const h = new QueueHost(nc, ctx, client, heartbeat, metrics, { pod: cfg.pod, ttlMs: timing.ttl, requestTimeoutMs: cfg.requestTimeoutMs, access: cfg.access }, hlog);
    ref.host = h;
    host = h;
    // The host starts its lease itself, once it has loaded (not placeable before).
    try {
      await h.start();
    } catch (err) {
      await h.stop().catch(() => undefined);
      heartbeat.stop();
      client.stop();
      throw err;
    }
    readiness.queue = () => h.ready();
    // Callers of other namespaces that the queue allows come in through its door.
    door = new QueueDoor(nc, spec.name, ctx.names, client, cfg.access, hlog.child({ component: 'queues.door' }));
    door.start();
  }
  return {
    routes: queueRoutes(client, metrics, { namespace: cfg.namespace, queues: new RemoteQueues(nc, { prefix: cfg.prefix, caller: cfg.caller, requestTimeoutMs: cfg.requestTimeoutMs }) }),
    client,
    readiness,
    async stop() {
      door?.stop();
      await heartbeat?.drain();
      await host?.stop();
      await heartbeat?.leave();
      client.stop();
    },
  };
}
