/**
 * One sidecar process: its NATS link, its HTTP API on localhost, and the
 * features its role enables. `startSidecar` wires them; `stop` drains them in
 * reverse order (readiness first, so load balancers and callers move away).
 */
import type { RequestListener, Server } from 'node:http';
import { http } from '../common/node-http.ts';
import express from 'express';
import type { Registry } from 'prom-client';
import { ownServiceAccount } from '../common/service-account.ts';
import { logger, type Logger } from '../common/logger.ts';
import type { SidecarConfig } from './config.ts';
import { namespaceGuard } from './access/namespace-guard.ts';
import { errorHandler, errorResponder, notFoundHandler } from './http/errors.ts';
import { startAdminServer } from './http/admin.ts';
import { healthRouter, Readiness } from './http/health.ts';
import { createMetricsRegistry } from './metrics.ts';
import { connectNats, type NatsLink } from './nats-connection.ts';
import { startObjects, type Objects } from './objects/mod.ts';
import { isObjectCall } from './objects/routes.ts';
import { isStorageCall } from './storage/routes.ts';
import { startQueues, type Queues } from './queues/mod.ts';
import { sqsRoutes } from './sqs/mod.ts';

export interface Sidecar {
  config: SidecarConfig;
  /** `http://127.0.0.1:<port>` — the address the app calls. */
  url: string;
  port: number;
  /** Port of the admin listener (probes, metrics, drain), when enabled. */
  adminPort?: number;
  nats: NatsLink;
  registry: Registry;
  stop(): Promise<void>;
}

export async function startSidecar(config: SidecarConfig, log: Logger = logger('sidecar', { role: config.role, pod: config.podName })): Promise<Sidecar> {
  const registry = createMetricsRegistry({ role: config.role, pod: config.podName });
  const nats = await connectNats(config.nats.urls, `castellan-${config.role}-${config.podName}`, log.child({ component: 'sidecar.nats' }), config.nats, config.namespace);

  // A start that fails half-way stops what it started, so a retry (cli/commands/sidecar.ts) starts clean.
  let objects: Objects | undefined;
  let queues: Queues | undefined;
  let server: Server | undefined;
  let readiness: Readiness;
  let port: number;
  let url: string;
  try {
    readiness = new Readiness();
    readiness.add('nats', () => (nats.connected() ? true : 'not connected to NATS'));

    const o = config.objects;
    // What objects and queues share: names, this pod, lease and caller timings.
    const base = {
      prefix: config.nats.prefix,
      namespace: config.namespace,
      pod: config.podName,
      leaseTtlMs: o.leaseTtl,
      requestTimeoutMs: o.requestTimeout,
      unavailableWaitMs: o.unavailableWait,
      /** Who this sidecar is when it calls, and who may call what it hosts (common/access.ts). */
      caller: { namespace: config.namespace, serviceAccount: ownServiceAccount(config.nats.auth?.serviceAccountToken, config.serviceAccount, log) },
      access: { namespace: config.namespace, callers: config.access.callers },
    };
    objects = await startObjects(
      nats.nc,
      registry,
      {
        ...base,
        ...(config.role === 'object-host' && o.class !== undefined && o.appPort !== undefined
          ? {
              host: {
                cls: o.class,
                appPort: o.appPort,
                concurrency: o.concurrency,
                maxQueue: o.maxQueue,
                idleTimeoutMs: o.idleTimeout,
                turnTimeoutMs: o.turnTimeout,
                streamReplicas: o.streamReplicas,
              },
            }
          : {}),
      },
      log.child({ component: 'sidecar.objects' }),
    );
    for (const [name, check] of Object.entries(objects.readiness)) readiness.add(name, check);

    const q = config.queues;
    queues = await startQueues(
      nats.nc,
      registry,
      {
        ...base,
        ...(config.role === 'queue-host' && q.queue !== undefined
          ? {
              host: {
                name: q.queue,
                hosts: q.hosts,
                replicaCount: q.replicaCount,
                visibilityTimeoutMs: q.visibilityTimeout,
                messageRetentionMs: q.messageRetention,
                maxMessageBytes: q.maxMessageBytes,
                delayMs: q.delay,
                ...(q.deadLetterQueue !== undefined && q.maxReceiveCount !== undefined ? { deadLetter: { queue: q.deadLetterQueue, maxReceiveCount: q.maxReceiveCount } } : {}),
              },
            }
          : {}),
      },
      log.child({ component: 'sidecar.queues' }),
    );
    for (const [name, check] of Object.entries(queues.readiness)) readiness.add(name, check);

    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use(healthRouter(readiness, registry));
    // Object calls and queue calls may name another namespace (their doors); listing may not (storage: its handler).
    app.use('/v1/classes', namespaceGuard(config.namespace));
    app.use(queues.routes);
    app.use(objects.listingRoutes);
    app.use(sqsRoutes({ client: queues.client, nc: nats.nc, prefix: config.nats.prefix, namespace: config.namespace, log: log.child({ component: 'sidecar.sqs' }) }));
    app.use(notFoundHandler);
    app.use(errorHandler(log));

    // Object calls and storage, the hot paths, go straight to their handlers; everything else through express.
    const objectCall = objects.handler;
    const storageCall = objects.storageHandler;
    const fail = errorResponder(log);
    server = await listen(
      (req, res) => {
        if (isObjectCall(req.url)) objectCall(req, res).catch((err: unknown) => fail(req, res, err));
        else if (isStorageCall(req.url)) storageCall(req, res).catch((err: unknown) => fail(req, res, err));
        else app(req, res);
      },
      config.http.host,
      config.http.port,
    );
    const address = server.address();
    port = typeof address === 'object' && address !== null ? address.port : config.http.port;
    url = `http://${config.http.host}:${port}`;
    log.info('sidecar listening', { url, nats: config.nats.urls });
  } catch (err) {
    await objects?.stop().catch(() => undefined);
    await queues?.stop().catch(() => undefined);
    server?.close();
    await nats.nc.close().catch(() => undefined);
    throw err;
  }
  // Narrowed copies for the stop closure.
  const [o2, q2, srv] = [objects, queues, server];

  // First half of stopping, also what the preStop hook asks for: objects move away.
  let draining: Promise<void> | undefined;
  const drain = (): Promise<void> => {
    draining ??= (async () => {
      readiness.drain();
      await o2.stop();
    })();
    return draining;
  };
  let admin: Server | undefined;
  if (config.admin.port !== undefined) {
    try {
      admin = await startAdminServer({ host: config.admin.host, port: config.admin.port, readiness, registry, drain, log: log.child({ component: 'sidecar.admin' }) });
    } catch (err) {
      await o2.stop().catch(() => undefined);
      await q2.stop().catch(() => undefined);
      srv.close();
      await nats.nc.close().catch(() => undefined);
      throw err;
    }
    log.info('admin listening', { host: config.admin.host, port: config.admin.port });
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await drain();
      await q2.stop();
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeIdleConnections();
      });
      admin?.close();
      admin?.closeIdleConnections();
      await nats.nc.drain().catch(() => nats.nc.close());
      log.info('sidecar stopped');
    })();
    return stopping;
  };

  return { config, url, port, ...(config.admin.port !== undefined ? { adminPort: config.admin.port } : {}), nats, registry, stop };
}

function listen(handler: RequestListener, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.listen(port, host);
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}
