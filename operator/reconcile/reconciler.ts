/**
 * Level-triggered, idempotent reconcile of one custom resource (either kind):
 *
 *   read the resource from the informer cache →
 *   deleting?  run the finalizer: per deletionPolicy delete (after the host
 *              pods are gone) or keep the JetStream assets, then drop the finalizer →
 *   otherwise: ensure the finalizer, server-side apply the desired children
 *              (ConfigMap, headless Service, StatefulSet, PDB; a child edited
 *              or deleted by someone is put back), ensure the JetStream assets,
 *              and write status (counts from the StatefulSet, observedGeneration,
 *              Ready/Progressing/Degraded) only when it changed.
 *
 * Whatever event woke it, it computes everything from the current state, so a
 * lost, repeated or reordered event changes nothing. A failure is recorded in
 * status (Degraded) and as an Event, and thrown so the key is retried with backoff.
 */
import type * as k8s from '@kubernetes/client-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { parseSpec, type CustomResource } from '../api/resources.ts';
import type { NatsPool } from '../assets/nats-pool.ts';
import type { Informer } from '../controller/informer.ts';
import type { EventRecorder } from '../controller/events.ts';
import { apiMessage, statusOf, type ChildKind, type Kube } from '../controller/kube.ts';
import { selectorString, type OperatorDefaults } from '../desired/common.ts';
import { computeConditions, viewStatefulSet, type Problem } from '../desired/status.ts';
import { conditionsEqual, type Condition } from '../runtime/conditions.ts';
import type { KindHandler } from './kinds.ts';

export const finalizerName = 'castellan.dev/jetstream-assets';
const assetRecheckMs = 60_000;

export interface ReconcileResult {
  /** Reconcile again after this long even without an event (e.g. waiting for pods to go). */
  requeueAfterMs?: number;
}

export interface ReconcilerDeps {
  kube: Kube;
  crs: Informer<CustomResource>;
  children: Record<ChildKind, Informer<k8s.KubernetesObject>>;
  defaults: OperatorDefaults;
  nats: NatsPool;
  events: EventRecorder;
  log: Logger;
  /** Called with what `observe` read (for the operator's per-resource gauges). */
  onObserved?: (namespace: string, name: string, observed: Record<string, number>) => void;
  /** Why a resource's spec.nats.urls may not be dialled (operator/security/nats-url-policy.ts), or undefined. */
  refuseNatsUrls?: (urls: readonly string[] | undefined) => string | undefined;
}

/** Thrown after a failed reconcile was recorded, so the work queue backs off. */
export class ReconcileError extends Error {}

export class Reconciler<S> {
  private readonly h: KindHandler<S>;
  private readonly d: ReconcilerDeps;
  /** Conditions this operator last wrote per key (fresher than the cache right after a write). */
  private readonly written = new Map<string, { generation: number; conditions: Condition[] }>();
  /** When the JetStream assets were last ensured per key (for which generation of which resource). */
  private readonly ensured = new Map<string, { generation: number; uid: string; at: number }>();

  constructor(handler: KindHandler<S>, deps: ReconcilerDeps) {
    this.h = handler;
    this.d = deps;
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const cr = this.d.crs.get(name, namespace);
    const key = `${namespace}/${name}`;
    if (cr === undefined) {
      // Gone: the garbage collector removes the children through their owner references.
      this.written.delete(key);
      this.ensured.delete(key);
      return {};
    }
    if (cr.metadata.deletionTimestamp !== undefined && cr.metadata.deletionTimestamp !== null) return this.finalize(cr);

    const parsed = parseSpec(this.h.schema, cr.spec);
    if (!parsed.ok) {
      await this.writeStatus(cr, undefined, { reason: 'InvalidSpec', message: parsed.message });
      this.d.events.record(cr, 'Warning', 'InvalidSpec', parsed.message);
      return {}; // nothing to retry until the spec changes
    }
    const typed = { ...cr, spec: parsed.spec } as CustomResource<S>;
    const refused = this.d.refuseNatsUrls?.(this.h.nats(parsed.spec)?.urls);
    if (refused !== undefined) {
      await this.writeStatus(cr, undefined, { reason: 'NatsUrlNotAllowed', message: refused });
      this.d.events.record(cr, 'Warning', 'NatsUrlNotAllowed', refused);
      return {}; // nothing is created or dialled until the spec or the operator's allow-list changes
    }

    if (!(cr.metadata.finalizers ?? []).includes(finalizerName)) {
      await this.d.kube.setFinalizers(this.h.kind, cr, [...(cr.metadata.finalizers ?? []), finalizerName]);
    }

    const desired = this.h.desired(typed, this.d.defaults);
    let problem: Problem | undefined;
    let sts: k8s.V1StatefulSet | undefined;
    const plan: [ChildKind, k8s.KubernetesObject][] = [
      ['ConfigMap', desired.configMap],
      ['Service', desired.service],
      ['StatefulSet', desired.statefulSet],
      ['PodDisruptionBudget', desired.pdb],
    ];
    for (const [kind, obj] of plan) {
      const conflict = this.conflict(kind, obj, cr);
      if (conflict !== undefined) {
        problem ??= { reason: 'NameConflict', message: conflict };
        continue;
      }
      try {
        const stored = await this.d.kube.apply(obj);
        if (kind === 'StatefulSet') sts = stored as k8s.V1StatefulSet;
      } catch (err) {
        problem ??= { reason: 'ApplyFailed', message: `${kind} ${obj.metadata?.name}: ${apiMessage(err)}` };
      }
    }

    const prefix = this.prefix(typed.spec);
    sts ??= this.d.children.StatefulSet.get(name, namespace) as k8s.V1StatefulSet | undefined;
    const view = viewStatefulSet(sts, this.h.desiredCount(typed.spec));
    let observed: Record<string, number> = {};
    try {
      const nc = await this.d.nats.get(this.urls(typed.spec), namespace);
      // Assets are ensured on every new generation, and again when the last check is over a minute old
      // (so a deleted stream comes back at the latest with the next resync).
      const last = this.ensured.get(key);
      const generation = cr.metadata.generation ?? 0;
      if (last === undefined || last.generation !== generation || last.uid !== cr.metadata.uid || Date.now() - last.at > assetRecheckMs) {
        const what = await this.h.ensureAssets(nc, prefix, typed, this.d.log);
        this.ensured.set(key, { generation, uid: cr.metadata.uid, at: Date.now() });
        this.d.log.debug('JetStream assets ensured', { kind: this.h.kind, key, assets: what });
      }
      if (this.h.observe !== undefined && (view?.ready ?? 0) > 0) {
        const seen = await this.h.observe(nc, prefix, typed, this.d.log, this.d.defaults.operatorServiceAccount ?? 'default');
        observed = seen.status;
        this.d.onObserved?.(namespace, name, observed);
        for (const w of seen.warnings) this.d.events.record(cr, 'Warning', w.reason, w.message);
      }
    } catch (err) {
      problem ??= { reason: 'JetStreamUnavailable', message: `JetStream assets: ${describeError(err)}` };
    }

    const changed = await this.writeStatus(cr, view, problem, observed);
    if (problem !== undefined) {
      this.d.events.record(cr, 'Warning', problem.reason, problem.message);
      throw new ReconcileError(`${problem.reason}: ${problem.message}`);
    }
    if (changed.observedGenerationChanged) {
      this.d.events.record(cr, 'Normal', 'Reconciled', `generation ${cr.metadata.generation ?? 0} applied (config ${desired.hash})`);
    }
    return this.h.refreshMs === undefined ? {} : { requeueAfterMs: this.h.refreshMs };
  }

  /** The deletion finalizer: keep or remove the JetStream assets, then let the resource go. */
  private async finalize(cr: CustomResource): Promise<ReconcileResult> {
    const finalizers = cr.metadata.finalizers ?? [];
    if (!finalizers.includes(finalizerName)) return {};
    const { name, namespace } = cr.metadata;
    const parsed = parseSpec(this.h.schema, cr.spec);
    const rawPolicy = (cr.spec as { deletionPolicy?: unknown } | undefined)?.deletionPolicy;
    const policy = parsed.ok ? this.h.deletionPolicy(parsed.spec) : rawPolicy === 'Delete' ? 'Delete' : 'Retain';
    const spec = (parsed.ok ? parsed.spec : cr.spec) as S;
    const prefix = this.prefix(spec);
    const assets = this.h.assetName(prefix, cr as CustomResource<S>);

    const refused = this.d.refuseNatsUrls?.(this.h.nats(spec)?.urls);
    if (policy === 'Delete' && refused !== undefined) {
      this.d.events.record(cr, 'Warning', 'NatsUrlNotAllowed', `${refused}; JetStream assets not deleted`);
    } else if (policy === 'Delete') {
      // Stop the hosts first, so that none re-creates what is deleted next.
      if (this.d.children.StatefulSet.get(name, namespace) !== undefined) {
        await this.d.kube.deleteChild('StatefulSet', namespace, name, 'Foreground');
        this.d.log.info('waiting for the host pods to stop before deleting the JetStream assets', { kind: this.h.kind, namespace, name });
        return { requeueAfterMs: 1_000 };
      }
      try {
        const nc = await this.d.nats.get(this.urls(spec), namespace);
        await this.h.deleteAssets(nc, prefix, cr as CustomResource<S>, this.d.log);
      } catch (err) {
        const message = `could not delete ${assets}: ${describeError(err)}`;
        this.d.events.record(cr, 'Warning', 'AssetDeletionFailed', message);
        throw new ReconcileError(message);
      }
      this.d.events.record(cr, 'Normal', 'AssetsDeleted', `deleted ${assets} (deletionPolicy Delete)`);
    } else {
      this.d.events.record(cr, 'Normal', 'AssetsRetained', `kept ${assets} (deletionPolicy Retain)`);
    }
    try {
      await this.d.kube.setFinalizers(
        this.h.kind,
        cr,
        finalizers.filter((f) => f !== finalizerName),
      );
    } catch (err) {
      if (statusOf(err) === 404) return {};
      throw err;
    }
    this.written.delete(`${namespace}/${name}`);
    this.ensured.delete(`${namespace}/${name}`);
    this.d.log.info('finalized', { kind: this.h.kind, namespace, name, deletionPolicy: policy });
    return {};
  }

  /** A child of that name that another controller owns: the operator never takes it over. */
  private conflict(kind: ChildKind, obj: k8s.KubernetesObject, cr: CustomResource): string | undefined {
    const name = obj.metadata?.name ?? '';
    const existing = this.d.children[kind].get(name, cr.metadata.namespace);
    const owner = existing?.metadata?.ownerReferences?.find((r) => r.controller === true);
    if (owner === undefined || owner.uid === cr.metadata.uid) return undefined;
    return `${kind} ${name} already exists and belongs to ${owner.kind} ${owner.name}`;
  }

  private urls(spec: S): string[] {
    return this.h.nats(spec)?.urls ?? this.d.defaults.natsUrls;
  }

  private prefix(spec: S): string {
    const p = this.h.nats(spec)?.prefix ?? this.d.defaults.natsPrefix;
    return p === undefined || p === '' ? 'castellan' : p;
  }

  /** Writes status when it differs from what is stored; reports what changed. */
  private async writeStatus(
    cr: CustomResource,
    view: ReturnType<typeof viewStatefulSet>,
    problem: Problem | undefined,
    observed: Record<string, number> = {},
  ): Promise<{ observedGenerationChanged: boolean }> {
    const key = `${cr.metadata.namespace}/${cr.metadata.name}`;
    const generation = cr.metadata.generation ?? 0;
    const stored = (cr.status ?? {}) as { observedGeneration?: number; conditions?: Condition[]; selector?: string } & Record<string, unknown>;
    const mine = this.written.get(key);
    const prev = mine !== undefined && mine.generation >= (stored.observedGeneration ?? 0) ? mine.conditions : stored.conditions;
    const conditions = computeConditions(prev, generation, view, problem, this.h.unit);
    const counts = { ...this.h.statusCounts(view), ...observed };
    const status: Record<string, unknown> = {
      ...counts,
      selector: selectorString(this.h.component, cr.metadata.name),
      observedGeneration: generation,
      conditions,
    };
    const same =
      stored.observedGeneration === generation &&
      stored.selector === status.selector &&
      Object.entries(counts).every(([k, v]) => stored[k] === v) &&
      conditionsEqual(stored.conditions, conditions);
    if (same) return { observedGenerationChanged: false };
    try {
      await this.d.kube.patchStatus(this.h.kind, cr, status);
    } catch (err) {
      if (statusOf(err) === 404) return { observedGenerationChanged: false };
      throw err;
    }
    this.written.set(key, { generation, conditions });
    return { observedGenerationChanged: stored.observedGeneration !== generation };
  }
}
