/**
 * Durable objects in the sidecar: what sidecar.ts needs to wire them.
 * Every role gets the caller side (router + routes); the object-host role also
 * runs an ObjectHost for its class and adds an app-reachability readiness check.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Router as ExpressRouter } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../../common/logger.ts';
import { AppProxy } from './app-proxy.ts';
import { ObjectHost } from './host.ts';
import { defaultMargin, type LeaseTiming } from './lease.ts';
import { Membership } from './membership.ts';
import { createObjectMetrics } from './metrics.ts';
import { ObjectStore } from './ownership-store.ts';
import { Router } from './router.ts';
import { objectRoutes } from './routes.ts';
import type { Concurrency } from './turn-queue.ts';
import { META_HEADROOM } from './wire.ts';

export { encodeId, decodeId, parseIdSegment, classNames } from './subjects.ts';
export type { Concurrency } from './turn-queue.ts';

export interface ObjectsConfig {
  prefix: string;
  namespace: string;
  pod: string;
  leaseTtlMs: number;
  requestTimeoutMs: number;
  unavailableWaitMs: number;
  /** Present on object hosts. */
  host?: {
    cls: string;
    appPort: number;
    concurrency: Concurrency;
    maxQueue: number;
    idleTimeoutMs: number;
    streamReplicas: number;
  };
}

export interface Objects {
  routes: ExpressRouter;
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
    { requestTimeoutMs: cfg.requestTimeoutMs, unavailableWaitMs: cfg.unavailableWaitMs, maxRedirects: 8, maxBodyBytes },
    log.child({ component: 'objects.router' }),
  );
  const readiness: Objects['readiness'] = {};
  let host: ObjectHost | undefined;
  let app: AppProxy | undefined;
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
        dedupe: { max: 10_000, ttlMs: Math.max(60_000, 2 * cfg.requestTimeoutMs) },
      },
      log.child({ component: 'objects.host', cls: cfg.host.cls }),
    );
    await host.start();
    const a = app;
    const h = host;
    readiness.app = () => a.reachable();
    readiness.objects = () => h.ready();
  }
  return {
    routes: objectRoutes(router),
    readiness,
    async stop() {
      await host?.drain();
      membership.stop();
      app?.close();
    },
  };
}
