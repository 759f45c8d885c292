/**
 * Keeps the NATS accounts' imports and exports (accounts.ts) in step with the
 * resources: watches every DurableObject and ReplicatedQueue the operator
 * watches and, after each change (batched over `debounceMs`), hands the
 * cross-namespace grants their `spec.access.callers` make to the account
 * registry, which pushes the accounts that changed. Runs on every operator
 * replica, leader or not, as the callout does.
 */
import type * as k8s from '@kubernetes/client-node';
import type { z } from 'zod';
import { describeError, type Logger } from '../../common/logger.ts';
import { durableObjectSpecSchema, kinds, parseSpec, replicatedQueueSpecSchema, type CustomResource, type KindName } from '../api/resources.ts';
import { crWatchPath, Kube } from '../controller/kube.ts';
import { Informer } from '../controller/informer.ts';
import { callGrants, type ResourceAccess } from './accounts.ts';
import type { AccountRegistry } from './account-registry.ts';

export interface GrantsWatchOptions {
  kc: k8s.KubeConfig;
  registry: AccountRegistry;
  /** Namespaces to watch; empty = all. */
  namespaces: string[];
  /** The subject prefix of a resource that names none. */
  defaultPrefix: string;
  log: Logger;
  debounceMs?: number;
}

/** The part of both specs this reads. */
type AccessPart = { nats?: { prefix?: string }; access?: { callers?: { namespace: string }[] } };
const specSchemas: Record<KindName, z.ZodType<AccessPart>> = { DurableObject: durableObjectSpecSchema, ReplicatedQueue: replicatedQueueSpecSchema };

/**
 * What a resource opens to other namespaces, read with the spec schema the
 * reconciler uses: a spec that does not parse opens nothing (its prefix and
 * callers end up in subjects and account names of other namespaces' JWTs, so
 * an invalid one must never reach them).
 */
export function resourceAccess(cr: CustomResource, defaultPrefix: string): ResourceAccess | undefined {
  const namespace = cr.metadata.namespace;
  if (!namespace || !(cr.kind in specSchemas)) return undefined;
  const parsed = parseSpec(specSchemas[cr.kind as keyof typeof specSchemas], cr.spec ?? {});
  if (!parsed.ok) return undefined;
  const spec = parsed.spec;
  return { namespace, prefix: spec.nats?.prefix ?? defaultPrefix, callers: (spec.access?.callers ?? []).map((c) => c.namespace) };
}

export class GrantsWatch {
  private readonly informers: Informer<CustomResource>[] = [];
  private readonly opts: GrantsWatchOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(opts: GrantsWatchOptions) {
    this.opts = opts;
    const kube = new Kube(opts.kc);
    const namespaces: (string | undefined)[] = opts.namespaces.length === 0 ? [undefined] : opts.namespaces;
    for (const kind of Object.keys(kinds) as KindName[]) {
      for (const ns of namespaces) {
        this.informers.push(
          new Informer<CustomResource>({
            name: `grants.${kinds[kind].plural}${ns === undefined ? '' : `@${ns}`}`,
            kc: opts.kc,
            path: crWatchPath(kind, ns),
            list: kube.listCustom(kind, ns),
            onEvent: () => this.schedule(),
            log: opts.log,
          }),
        );
      }
    }
  }

  start(): void {
    for (const i of this.informers) i.start();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.informers.every((i) => i.synced())) {
        this.schedule();
        return;
      }
      const grants = callGrants(this.informers.flatMap((i) => i.list().flatMap((cr) => resourceAccess(cr, this.opts.defaultPrefix) ?? [])));
      this.running = this.running.then(() => this.opts.registry.update(grants)).catch((err: unknown) => {
          this.opts.log.error('could not update the NATS accounts', { error: describeError(err) });
        });
    }, this.opts.debounceMs ?? 200);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.allSettled(this.informers.map((i) => i.stop()));
    await this.running;
  }
}
