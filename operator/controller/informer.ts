/**
 * An informer that survives: @kubernetes/client-node's ListWatch keeps a
 * cache from list + watch and relists by itself after a 410 Gone, but it gives
 * up on any other error (API server restarted, connection refused, 5xx). This
 * wrapper restarts it after an exponential backoff (1 s doubling to 30 s,
 * reset once a watch is established), so watches resume whenever the API
 * server comes back. `synced()` is true once a first list has succeeded.
 */
import * as k8s from '@kubernetes/client-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { backoffDelay } from '../runtime/workqueue.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends k8s.KubernetesObject> {
  name: string;
  kc: k8s.KubeConfig;
  /** Watch path, e.g. /apis/apps/v1/namespaces/ns/statefulsets or /apis/apps/v1/statefulsets. */
  path: string;
  list: () => Promise<k8s.KubernetesListObject<T>>;
  labelSelector?: string;
  onEvent: (type: InformerEvent, obj: T) => void;
  log: Logger;
  /** Called on every restart after an error (for metrics). */
  onRestart?: () => void;
}

export class Informer<T extends k8s.KubernetesObject> {
  private readonly lw: k8s.ListWatch<T>;
  private readonly opts: InformerOptions<T>;
  private failures = 0;
  private stopped = false;
  private everSynced = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    this.lw = new k8s.ListWatch<T>(opts.path, new k8s.Watch(opts.kc), opts.list, false, opts.labelSelector);
    this.lw.on('add', (o) => opts.onEvent('add', o));
    this.lw.on('update', (o) => opts.onEvent('update', o));
    this.lw.on('delete', (o) => opts.onEvent('delete', o));
    this.lw.on('connect', () => {
      // A (re)connect that follows a successful list or watch event: the backoff can start over.
      if (this.lw.latestResourceVersion() !== '') this.everSynced = true;
    });
    this.lw.on('error', (err) => this.restartLater(err));
  }

  start(): void {
    this.stopped = false;
    this.run();
  }

  private run(): void {
    if (this.stopped) return;
    this.lw.start().then(
      () => {
        if (this.lw.latestResourceVersion() !== '') {
          this.everSynced = true;
          this.failures = 0;
        }
      },
      (err: unknown) => this.restartLater(err),
    );
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.timer !== undefined) return;
    this.failures += 1;
    const delay = backoffDelay(this.failures, { baseMs: 1_000, maxMs: 30_000 });
    this.opts.log.warn('watch failed; restarting', { informer: this.opts.name, error: describeError(err), retryInMs: delay });
    this.opts.onRestart?.();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run();
    }, delay);
  }

  /** True once a list has succeeded (the cache is usable). */
  synced(): boolean {
    return this.everSynced;
  }

  get(name: string, namespace: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.lw.stop();
  }
}
