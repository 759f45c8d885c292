/**
 * Leader election decisions on a coordination.k8s.io Lease, as pure functions
 * (client-go's leaderelection semantics):
 *
 * - a candidate may take the Lease when it has no holder, when it holds it
 *   already, or when the holder has not renewed for `leaseDurationSeconds`
 *   as measured on the candidate's own clock since it last saw the record
 *   change (so clock skew between operators does not matter);
 * - a leader that cannot renew within `renewDeadline` of its last successful
 *   renewal must stop acting before any other candidate may take over
 *   (renewDeadline < leaseDuration).
 */

export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  acquireTime?: string;
  renewTime?: string;
}

export interface Observation {
  /** The record as last read. */
  record: LeaseRecord | undefined;
  /** Local monotonic time (ms) when the record was last seen to change. */
  observedAt: number;
}

export type LeaseDecision =
  | { action: 'acquire'; record: LeaseRecord }
  | { action: 'renew'; record: LeaseRecord }
  | { action: 'wait'; holder: string; retryInMs: number };

export function decide(identity: string, obs: Observation, nowMono: number, nowWall: Date, leaseDurationSeconds: number): LeaseDecision {
  const current = obs.record;
  const stamp = nowWall.toISOString().replace('Z', '000Z');
  const holder = current?.holderIdentity ?? '';
  if (holder === identity) {
    return { action: 'renew', record: { ...current, leaseDurationSeconds, renewTime: stamp } };
  }
  const duration = (current?.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
  const expired = holder === '' || nowMono - obs.observedAt >= duration;
  if (!expired) return { action: 'wait', holder, retryInMs: Math.max(0, duration - (nowMono - obs.observedAt)) };
  return {
    action: 'acquire',
    record: {
      holderIdentity: identity,
      leaseDurationSeconds,
      acquireTime: stamp,
      renewTime: stamp,
      leaseTransitions: (current?.leaseTransitions ?? 0) + (holder === '' ? 0 : 1),
    },
  };
}

/** Whether a leader whose last successful renewal was at `lastRenewMono` must stop acting. */
export function mustStepDown(lastRenewMono: number, nowMono: number, renewDeadlineMs: number): boolean {
  return nowMono - lastRenewMono >= renewDeadlineMs;
}

/** Whether two reads of the lease differ (a renewal or a new holder). */
export function recordChanged(a: LeaseRecord | undefined, b: LeaseRecord | undefined): boolean {
  return a?.holderIdentity !== b?.holderIdentity || a?.renewTime !== b?.renewTime || a?.leaseTransitions !== b?.leaseTransitions;
}
