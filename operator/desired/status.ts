/**
 * Status of a DurableObject / ReplicatedQueue from what the operator observed
 * (pure): host counts from the StatefulSet, and the Ready, Progressing and
 * Degraded conditions. Conditions keep their lastTransitionTime unless their
 * status flips (operator/runtime/conditions.ts).
 */
import type { V1StatefulSet } from '@kubernetes/client-node';
import { setCondition, type Condition, type ConditionUpdate } from '../runtime/conditions.ts';

export interface WorkloadView {
  /** Desired host pods (spec.replicas / spec.hosts). */
  desired: number;
  /** Pods that exist, are ready, run the latest template. */
  replicas: number;
  ready: number;
  updated: number;
  /** The StatefulSet controller has seen the latest StatefulSet spec. */
  observed: boolean;
  /** All pods run the latest revision. */
  rolledOut: boolean;
}

export function viewStatefulSet(sts: V1StatefulSet | undefined, desired: number): WorkloadView | undefined {
  if (sts === undefined) return undefined;
  const st = sts.status;
  const replicas = st?.replicas ?? 0;
  const updated = st?.updatedReplicas ?? 0;
  const observed = (st?.observedGeneration ?? 0) >= (sts.metadata?.generation ?? 0);
  const rolledOut = observed && updated >= desired && replicas === desired;
  return { desired, replicas, ready: st?.readyReplicas ?? 0, updated, observed, rolledOut };
}

/** A problem found while reconciling; it makes the resource Degraded (and not Ready). */
export interface Problem {
  reason: string;
  message: string;
}

/** The three conditions for one reconcile, from the previous list. */
export function computeConditions(
  prev: readonly Condition[] | undefined,
  generation: number,
  workload: WorkloadView | undefined,
  problem: Problem | undefined,
  unit: 'replicas' | 'hosts',
  now: Date = new Date(),
): Condition[] {
  const g = { observedGeneration: generation };
  let ready: ConditionUpdate;
  let progressing: ConditionUpdate;
  let degraded: ConditionUpdate;

  if (problem !== undefined) {
    degraded = { type: 'Degraded', status: 'True', reason: problem.reason, message: problem.message, ...g };
  } else {
    degraded = { type: 'Degraded', status: 'False', reason: 'ReconcileSucceeded', message: 'the desired state was applied', ...g };
  }

  if (workload === undefined) {
    ready = { type: 'Ready', status: 'False', reason: problem?.reason ?? 'Pending', message: problem?.message ?? `no ${unit} yet`, ...g };
    progressing = { type: 'Progressing', status: 'True', reason: 'Creating', message: `creating the ${unit}`, ...g };
  } else {
    const w = workload;
    const count = `${w.ready}/${w.desired} ${unit} ready`;
    if (problem !== undefined) ready = { type: 'Ready', status: 'False', reason: problem.reason, message: `${count}; ${problem.message}`, ...g };
    else if (w.ready >= w.desired && w.desired > 0) ready = { type: 'Ready', status: 'True', reason: 'AllReady', message: count, ...g };
    else ready = { type: 'Ready', status: 'False', reason: 'NotAllReady', message: count, ...g };

    if (!w.observed || !w.rolledOut) {
      progressing = { type: 'Progressing', status: 'True', reason: 'RollingOut', message: `${w.updated}/${w.desired} ${unit} run the latest configuration`, ...g };
    } else if (w.ready < w.desired || w.replicas !== w.desired) {
      progressing = { type: 'Progressing', status: 'True', reason: 'Scaling', message: `${w.replicas} ${unit}, ${w.ready} ready, ${w.desired} desired`, ...g };
    } else {
      progressing = { type: 'Progressing', status: 'False', reason: 'Complete', message: `all ${w.desired} ${unit} run the latest configuration and are ready`, ...g };
    }
  }
  let list = setCondition(prev, ready, now);
  list = setCondition(list, progressing, now);
  list = setCondition(list, degraded, now);
  return list;
}
