/**
 * Durable objects in the sidecar: what sidecar.ts needs to wire them.
 * Every role gets the caller side (router + routes); the object-host role also
 * runs an ObjectHost for its class and adds an app-reachability readiness check.
 * Object storage (sidecar/storage) is served by every role (non-hosts answer
 * 409 NOT_OWNER); object hosts also run the class's alarm dispatcher
 * (sidecar/alarms).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Router as ExpressRouter } from 'express';
import type { Registry } from 'prom-client';
import type { AccessPolicy, CallerIdentity } from '../../common/access.ts';
import type { Logger } from '../../common/logger.ts';
import { DEFAULT_ALARM_RETRY } from '../alarms/backoff.ts';
import { AlarmDispatcher } from '../alarms/dispatcher.ts';
import { Journal } from '../storage/journal.ts';
import { createStorageMetrics } from '../storage/metrics.ts';
import { storageHandler, type StorageHandler } from '../storage/routes.ts';
import { Storage } from '../storage/storage.ts';
import { AppProxy } from './app-proxy.ts';
import { ObjectHost } from './host.ts';
import { defaultMargin, type LeaseTiming } from './lease.ts';
import { Membership } from './membership.ts';
import { createObjectMetrics } from './metrics.ts';
import { ObjectStore } from './ownership-store.ts';
import { Router } from './router.ts';
import { objectHandler, type ObjectHandler } from './routes.ts';
import type { Concurrency } from './turn-queue.ts';
import { META_HEADROOM } from './wire.ts';
import { RemoteObjects } from '../access/remote-call.ts';
import { startListing } from '../listing/start.ts';
import { objectIndexHook } from '../listing/summary.ts';

export { encodeId, decodeId, parseIdSegment, classNames } from './subjects.ts';
export type { Concurrency } from './turn-queue.ts';

export interface ObjectsConfig {
  prefix: string;
  namespace: string;
  pod: string;
  leaseTtlMs: number;
  requestTimeoutMs: number;
  unavailableWaitMs: number;
  /** This sidecar's identity as a caller (common/access.ts). */
  caller: CallerIdentity;
  /** Who may call the class this sidecar hosts (object hosts). */
  access: AccessPolicy;
  /** Present on object hosts. */
  host?: {
    cls: string;
    appPort: number;
    concurrency: Concurrency;
    maxQueue: number;
    idleTimeoutMs: number;
    /** How long one request may run in the app before its object is stuck (default 60 s). */
    turnTimeoutMs?: number;
    streamReplicas: number;
  };
}

export interface Objects {
  /** Object calls (SPEC §2.1), on node's request and response (the sidecar's hot path, outside express). */
  handler: ObjectHandler;
  /** Object storage and alarms API (SPEC §2.2), served without express (like `handler`). */
  storageHandler: StorageHandler;
  /** Listing and inspection API (SPEC §2.6, sidecar/listing). */
  listingRoutes: ExpressRouter;
  /** Readiness checks to add (name → check). */
  readiness: Record<string, () => Promise<true | string> | true | string>;
  /** Graceful: drains the host (if any), then stops views. */
  stop(): Promise<void>;
}

export async function startObjects(nc: NatsConnection, registry: Registry, cfg: ObjectsConfig, log: Logger): Promise<Objects> {
  const timing: LeaseTiming = { ttl: cfg.leaseTtlMs, margin: defaultMargin(cfg.leaseTtlMs) };
  const metrics = createObjectMetrics(registry);
  const store = new ObjectStore(nc, { prefix: cfg.prefix, namespace: cfg.namespace, timeoutMs: Math.max(500, Math.min(5_000, cfg.leaseTtlMs)), log });
  const membership = new Membership(store, timing, log);
  const maxBodyBytes = Math.max(1024, nc.info?.max_payload ?? 1024 * 1024) - META_HEADROOM;
  const router = new Router(
    nc,
    store,
    membership,
    metrics,
    { requestTimeoutMs: cfg.requestTimeoutMs, unavailableWaitMs: cfg.unavailableWaitMs, maxRedirects: 8, maxBodyBytes, caller: cfg.caller },
    log.child({ component: 'objects.router' }),
  );
  const readiness: Objects['readiness'] = {};
  let host: ObjectHost | undefined;
  let app: AppProxy | undefined;
  let alarms: AlarmDispatcher | undefined;
  const storageMetrics = createStorageMetrics(registry);
  const journal = new Journal(nc, Math.max(2_000, Math.min(10_000, 2 * cfg.leaseTtlMs)));
  if (cfg.host !== undefined) {
    app = new AppProxy(cfg.host.appPort, maxBodyBytes);
    host = new ObjectHost(
      nc,
      store,
      membership.view(cfg.host.cls),
      app,
      metrics,
      {
        cls: cfg.host.cls,
        pod: cfg.pod,
        concurrency: cfg.host.concurrency,
        maxQueue: cfg.host.maxQueue,
        idleTimeoutMs: cfg.host.idleTimeoutMs,
        timing,
        streamReplicas: cfg.host.streamReplicas,
        drainTimeoutMs: cfg.requestTimeoutMs,
        turnTimeoutMs: cfg.host.turnTimeoutMs ?? 60_000,
        maxQueueBytes: 64 * 1024 * 1024,
        dedupe: { max: 10_000, maxBytes: 64 * 1024 * 1024, ttlMs: Math.max(60_000, 2 * cfg.requestTimeoutMs) },
        access: cfg.access,
      },
      log.child({ component: 'objects.host', cls: cfg.host.cls }),
    );
    await host.start();
    router.attachLocal(host);
    const names = store.names(cfg.host.cls);
    alarms = new AlarmDispatcher(
      nc,
      router,
      storageMetrics,
      { cls: cfg.host.cls, names, policy: DEFAULT_ALARM_RETRY, deliveryTimeoutMs: cfg.requestTimeoutMs, maxConcurrent: 64 },
      log.child({ component: 'alarms', cls: cfg.host.cls }),
    );
    await alarms.start();
    const a = app;
    const h = host;
    readiness.app = () => a.reachable();
    readiness.objects = () => h.ready();
  }
  const hostNames = host === undefined ? undefined : store.names(host.cls);
  const storage = new Storage(host, journal, hostNames, storageMetrics, log.child({ component: 'storage' }), hostNames === undefined ? undefined : objectIndexHook(hostNames));
  const listing = startListing(nc, registry, { store, membership, router, journal, storage, host }, log.child({ component: 'listing' }));
  return {
    handler: objectHandler(router, {
      namespace: cfg.namespace,
      objects: new RemoteObjects(
        nc,
        { prefix: cfg.prefix, caller: cfg.caller, requestTimeoutMs: cfg.requestTimeoutMs, unavailableWaitMs: cfg.unavailableWaitMs, maxRedirects: 8, maxBodyBytes },
        log.child({ component: 'objects.remote' }),
      ),
    }),
    storageHandler: storageHandler(storage, cfg.namespace),
    listingRoutes: listing.routes,
    readiness,
    async stop() {
      listing.stop();
      await alarms?.stop();
      await host?.drain();
      membership.stop();
      app?.close();
    },
  };
}
