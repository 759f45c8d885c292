/**
 * The operator process: an HTTP server (/healthz, /readyz, /metrics), leader
 * election on a Lease, and — only while leading — the controllers: informers
 * on DurableObjects, ReplicatedQueues and their children, one de-duplicating
 * work queue with per-key backoff, and reconcile workers.
 *
 * Event handling filters on generation: an update of a custom resource that
 * only changed its status (the operator's own writes) wakes nothing; a child's
 * change wakes its owner (drift repair, status from the StatefulSet). Every
 * resource is also re-queued each resyncPeriod. A leader that loses its Lease
 * stops its controllers at once and reports it through `onLostLeadership`.
 */
import type { Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import express from 'express';
import type * as k8s from '@kubernetes/client-node';
import { ownServiceAccount } from '../common/service-account.ts';
import { describeError, type Logger } from '../common/logger.ts';
import { healthRouter, Readiness } from '../sidecar/http/health.ts';
import { kinds, type CustomResource, type KindName } from './api/resources.ts';
import { NatsPool } from './assets/nats-pool.ts';
import { refusedNatsUrls } from './security/nats-url-policy.ts';
import { startAuthCalloutFromConfig } from './authcallout/start.ts';
import type { OperatorConfig } from './config.ts';
import { EventRecorder } from './controller/events.ts';
import { Informer, type InformerEvent } from './controller/informer.ts';
import { childApis, childSelector, crWatchPath, Kube, watchPath, type ChildKind } from './controller/kube.ts';
import type { OperatorDefaults } from './desired/common.ts';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.ts';
import { durableObjectHandler, replicatedQueueHandler } from './reconcile/kinds.ts';
import { ReconcileError, Reconciler } from './reconcile/reconciler.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { WorkQueue } from './runtime/workqueue.ts';
import { Webhook } from './webhook/webhook.ts';

export interface OperatorOptions {
  config: OperatorConfig;
  kc: k8s.KubeConfig;
  log: Logger;
  /** Called when a leader loses its Lease (after its controllers stopped). The CLI exits. */
  onLostLeadership?: () => void;
}

const defaultHttpPort = 8080;

const childKinds: ChildKind[] = ['StatefulSet', 'Service', 'ConfigMap', 'PodDisruptionBudget'];

/** The running controllers of a leader. */
class Controllers {
  private readonly informers: Informer<k8s.KubernetesObject>[] = [];
  private readonly crInformers = new Map<KindName, Informer<CustomResource>[]>();
  private readonly childInformers = new Map<ChildKind, Informer<k8s.KubernetesObject>[]>();
  private readonly queue = new WorkQueue({ baseMs: 500, maxMs: 60_000 });
  private readonly seen = new Map<string, string>();
  private readonly workers: Promise<void>[] = [];
  private readonly reconcilers: Record<KindName, Reconciler<unknown>>;
  private resync: NodeJS.Timeout | undefined;
  private readonly opts: OperatorOptions;
  private readonly metrics: OperatorMetrics;
  private stopped = false;

  constructor(opts: OperatorOptions, kube: Kube, nats: NatsPool, metrics: OperatorMetrics) {
    this.opts = opts;
    this.metrics = metrics;
    const { config, log } = opts;
    const namespaces: (string | undefined)[] = config.namespaces.length === 0 ? [undefined] : config.namespaces;

    for (const kind of Object.keys(kinds) as KindName[]) {
      const list = namespaces.map(
        (ns) =>
          new Informer<CustomResource>({
            name: `${kinds[kind].plural}${ns === undefined ? '' : `@${ns}`}`,
            kc: opts.kc,
            path: crWatchPath(kind, ns),
            list: kube.listCustom(kind, ns),
            onEvent: (type, obj) => this.onResource(kind, type, obj),
            log,
            onRestart: () => metrics.watchRestarts.inc({ informer: kinds[kind].plural }),
          }),
      );
      this.crInformers.set(kind, list);
      this.informers.push(...(list as unknown as Informer<k8s.KubernetesObject>[]));
    }
    for (const kind of childKinds) {
      const api = childApis[kind];
      const list = namespaces.map(
        (ns) =>
          new Informer<k8s.KubernetesObject>({
            name: `${api.plural}${ns === undefined ? '' : `@${ns}`}`,
            kc: opts.kc,
            path: watchPath(api.base, api.plural, ns),
            list: kube.listChildren(kind, ns),
            labelSelector: childSelector,
            onEvent: (_type, obj) => this.onChild(obj),
            log,
            onRestart: () => metrics.watchRestarts.inc({ informer: api.plural }),
          }),
      );
      this.childInformers.set(kind, list);
      this.informers.push(...list);
    }

    // The ServiceAccount the operator names in queue-host calls: its NATS token's (common/service-account.ts).
    const defaults: OperatorDefaults = { ...operatorDefaults(config), operatorServiceAccount: ownServiceAccount(config.nats.auth?.serviceAccountToken, config.serviceAccount, log) };
    const events = new EventRecorder(kube, 'castellan-operator', config.identity, log);
    const children = Object.fromEntries(childKinds.map((k) => [k, this.union(this.childInformers.get(k) ?? [])])) as Record<ChildKind, Informer<k8s.KubernetesObject>>;
    const refuseNatsUrls = (urls: readonly string[] | undefined) => refusedNatsUrls(urls, config.nats.urls, config.nats.allowedUrls);
    const deps = (kind: KindName) => ({
      kube,
      crs: this.union(this.crInformers.get(kind) ?? []),
      children,
      defaults,
      nats,
      events,
      refuseNatsUrls,
      log: log.child({ kind }),
      onObserved: (namespace: string, name: string, observed: Record<string, number>) => {
        for (const [field, v] of Object.entries(observed)) this.metrics.observed.set({ kind, namespace, name, field }, v);
      },
    });
    this.reconcilers = {
      DurableObject: new Reconciler(durableObjectHandler, deps('DurableObject')) as Reconciler<unknown>,
      ReplicatedQueue: new Reconciler(replicatedQueueHandler, deps('ReplicatedQueue')) as Reconciler<unknown>,
    };
  }

  /** One view over the per-namespace informers of a kind (get/list by namespace). */
  private union<T extends k8s.KubernetesObject>(list: Informer<T>[]): Informer<T> {
    if (list.length === 1) return list[0] as Informer<T>;
    const view = {
      get: (name: string, ns: string) => {
        for (const i of list) {
          const o = i.get(name, ns);
          if (o !== undefined) return o;
        }
        return undefined;
      },
      list: (ns?: string) => list.flatMap((i) => [...i.list(ns)]),
      synced: () => list.every((i) => i.synced()),
    };
    return view as unknown as Informer<T>;
  }

  start(): void {
    for (const i of this.informers) i.start();
    for (let n = 0; n < this.opts.config.workers; n++) this.workers.push(this.work());
    this.resync = setInterval(() => this.enqueueAll(), this.opts.config.resyncPeriod);
    this.resync.unref();
  }

  synced(): boolean {
    return this.informers.every((i) => i.synced());
  }

  private enqueueAll(): void {
    for (const [kind, list] of this.crInformers) for (const i of list) for (const o of i.list()) this.queue.add(keyOf(kind, o));
    this.metrics.queueDepth.set(this.queue.length);
  }

  private onResource(kind: KindName, type: InformerEvent, obj: CustomResource): void {
    const key = keyOf(kind, obj);
    if (type === 'delete') {
      this.seen.delete(key);
      this.queue.add(key);
      return;
    }
    // Generation filtering: status-only updates (our own writes) change none of these.
    const m = obj.metadata;
    const signature = `${m.generation ?? 0}|${m.deletionTimestamp === undefined || m.deletionTimestamp === null ? '' : 'deleting'}|${(m.finalizers ?? []).join(',')}`;
    if (type === 'update' && this.seen.get(key) === signature) return;
    this.seen.set(key, signature);
    this.queue.add(key);
    this.metrics.queueDepth.set(this.queue.length);
    this.metrics.managed.set({ kind }, (this.crInformers.get(kind) ?? []).reduce((n, i) => n + i.list().length, 0));
  }

  private onChild(obj: k8s.KubernetesObject): void {
    const owner = obj.metadata?.ownerReferences?.find((r) => r.controller === true && r.apiVersion.startsWith('castellan.dev/'));
    if (owner === undefined || !(owner.kind in kinds)) return;
    this.queue.add(`${owner.kind}/${obj.metadata?.namespace ?? ''}/${owner.name}`);
    this.metrics.queueDepth.set(this.queue.length);
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      this.metrics.queueDepth.set(this.queue.length);
      const [kind, namespace, name] = key.split('/') as [KindName, string, string];
      const t0 = performance.now();
      try {
        // Do nothing before the caches hold the world (a half-filled cache would look like drift).
        if (!this.synced()) {
          this.queue.addAfter(key, 500);
          continue;
        }
        const r = await this.reconcilers[kind].reconcile(namespace, name);
        this.queue.forget(key);
        if (r.requeueAfterMs !== undefined) {
          this.queue.addAfter(key, r.requeueAfterMs);
          this.metrics.reconciles.inc({ kind, result: 'requeue' });
        } else {
          this.metrics.reconciles.inc({ kind, result: 'success' });
        }
      } catch (err) {
        if (this.stopped) return;
        const delay = this.queue.retry(key);
        this.metrics.reconciles.inc({ kind, result: 'error' });
        const level = err instanceof ReconcileError ? 'warn' : 'error';
        this.opts.log.log(level, 'reconcile failed; retrying', { key, retryInMs: delay, error: describeError(err) });
      } finally {
        this.metrics.reconcileSeconds.observe({ kind }, (performance.now() - t0) / 1000);
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resync);
    this.queue.shutdown();
    await Promise.allSettled(this.informers.map((i) => i.stop()));
    await Promise.allSettled(this.workers);
  }
}

/** What the operator's configuration gives every sidecar it adds (StatefulSet pods and injected pods alike). */
export function operatorDefaults(config: OperatorConfig): OperatorDefaults {
  return {
    natsUrls: config.nats.urls,
    natsPrefix: config.nats.prefix === '' ? undefined : config.nats.prefix,
    sidecarImage: config.sidecar.image,
    sidecarImagePullPolicy: config.sidecar.imagePullPolicy,
    sidecarLogLevel: config.sidecar.logLevel,
    operatorServiceAccount: config.serviceAccount,
    ...(config.sidecar.tokenAudience !== undefined ? { sidecarTokenAudience: config.sidecar.tokenAudience } : {}),
    ...(config.sidecar.resources !== undefined ? { sidecarResources: config.sidecar.resources } : {}),
  };
}

function keyOf(kind: KindName, obj: k8s.KubernetesObject): string {
  return `${kind}/${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

export class Operator {
  readonly metrics: OperatorMetrics;
  private readonly opts: OperatorOptions;
  private readonly kube: Kube;
  private readonly nats: NatsPool;
  private authCallout: { close(): Promise<void> } | undefined;
  private controllers: Controllers | undefined;
  private elector: LeaderElector | undefined;
  private server: Server | undefined;
  /** The admission webhook (when enabled): served by every replica, certificates kept by the leader. */
  webhook: Webhook | undefined;
  private readonly readiness = new Readiness();
  private stopping = false;

  constructor(opts: OperatorOptions) {
    this.opts = opts;
    this.kube = new Kube(opts.kc);
    this.metrics = createOperatorMetrics();
    this.nats = new NatsPool(`castellan-operator ${opts.config.identity}`, opts.log.child({ component: 'operator.nats' }), opts.config.nats);
    this.readiness.add('kubernetes', () => withTimeout(this.kube.ping(), 3_000, 'the API server did not answer within 3s').then((): true => true));
    this.readiness.add('controllers', () => (this.controllers === undefined || this.controllers.synced() ? true : 'informer caches are filling'));
  }

  /** The HTTP port actually bound (after start). */
  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  isLeader(): boolean {
    return this.controllers !== undefined;
  }

  async start(): Promise<void> {
    const { config, log } = this.opts;
    if (config.authCallout.enabled) this.authCallout = await startAuthCalloutFromConfig(config, this.opts.kc, log.child({ component: 'operator.authcallout' }));
    await this.nats.preflight(config.nats.urls);
    const app = express();
    app.disable('x-powered-by');
    app.use(healthRouter(this.readiness, this.metrics.registry));
    app.get('/leader', (_req, res) => {
      res.json({ identity: config.identity, leader: this.isLeader() });
    });
    const listen = (port: number) =>
      new Promise<Server>((resolve, reject) => {
        const srv = app.listen(port, config.http.host, () => resolve(srv));
        srv.once('error', reject);
      });
    try {
      this.server = await listen(config.http.port ?? defaultHttpPort);
    } catch (err) {
      // Only the implicit default may move (two operators on one machine); an explicit port is an error.
      if (config.http.port !== undefined || (err as { code?: string }).code !== 'EADDRINUSE') throw err;
      log.warn('port 8080 is in use; serving /healthz, /readyz and /metrics on a free port instead', { host: config.http.host });
      this.server = await listen(0);
    }
    log.info('operator HTTP server listening', { host: config.http.host, port: this.port });
    if (config.webhook.enabled) {
      const webhook = new Webhook({ config, defaults: operatorDefaults(config), kc: this.opts.kc, log: log.child({ component: 'operator.webhook' }), registry: this.metrics.registry });
      this.webhook = webhook;
      this.readiness.add('webhook', () => webhook.ready());
      webhook.start();
    }

    if (!config.leaderElection.enabled) {
      this.startLeading();
      return;
    }
    const le = config.leaderElection;
    this.elector = new LeaderElector({
      kc: this.opts.kc,
      namespace: le.namespace,
      name: le.lease,
      identity: config.identity,
      leaseDurationMs: le.leaseDuration,
      renewDeadlineMs: le.renewDeadline,
      retryPeriodMs: le.retryPeriod,
      log: log.child({ component: 'operator.leader' }),
      onStartedLeading: () => this.startLeading(),
      onStoppedLeading: () => void this.lostLeadership(),
    });
    log.info('waiting for leadership', { lease: `${le.namespace}/${le.lease}`, identity: config.identity });
    this.elector.start();
  }

  private startLeading(): void {
    if (this.stopping || this.controllers !== undefined) return;
    this.opts.log.info('starting controllers', { namespaces: this.opts.config.namespaces.length === 0 ? 'all' : this.opts.config.namespaces });
    this.controllers = new Controllers(this.opts, this.kube, this.nats, this.metrics);
    this.controllers.start();
    this.webhook?.startLeading();
    this.metrics.leader.set(1);
  }

  private async lostLeadership(): Promise<void> {
    const c = this.controllers;
    this.controllers = undefined;
    this.webhook?.stopLeading();
    this.metrics.leader.set(0);
    await c?.stop();
    this.opts.log.error('stopped acting: leadership lost');
    this.opts.onLostLeadership?.();
  }

  /** Stops the controllers, releases the Lease (a successor takes over at once) and closes everything. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.readiness.drain();
    const c = this.controllers;
    this.controllers = undefined;
    this.metrics.leader.set(0);
    await c?.stop();
    await this.webhook?.stop();
    await this.elector?.stop();
    await this.nats.close();
    await this.authCallout?.close();
    const server = this.server;
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(message)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
