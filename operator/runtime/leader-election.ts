/**
 * Leader election on a coordination.k8s.io/v1 Lease: the adapter around
 * leader-decision.ts. Only the leader runs the controllers; a leader that
 * cannot renew before `renewDeadlineMs` calls `onStoppedLeading` and stops
 * acting (the process should then exit, as client-go's does, so a fresh
 * start re-joins cleanly). Updates use the Lease's resourceVersion, so two
 * candidates can never both win a round.
 */
import { performance } from 'node:perf_hooks';
import * as k8s from '@kubernetes/client-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { decide, mustStepDown, recordChanged, type LeaseRecord, type Observation } from './leader-decision.ts';

export interface LeaderElectionOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: k8s.CoordinationV1Api;
  private readonly opts: Required<Omit<LeaderElectionOptions, 'kc'>>;
  private obs: Observation = { record: undefined, observedAt: performance.now() };
  private leading = false;
  private lastRenew = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: LeaderElectionOptions) {
    this.api = opts.kc.makeApiClient(k8s.CoordinationV1Api);
    this.opts = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
    if (this.opts.renewDeadlineMs >= this.opts.leaseDurationMs) throw new Error('renewDeadline must be shorter than leaseDuration');
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.tick();
  }

  /** Stops campaigning; a leader releases the Lease so another takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.api.readNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace });
      if (lease.spec?.holderIdentity === this.opts.identity) {
        lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1 };
        await this.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: lease });
      }
    } catch (err) {
      this.opts.log.warn('could not release the leader lease', { error: describeError(err) });
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.round();
    } catch (err) {
      this.opts.log.warn('leader election round failed', { error: describeError(err) });
    }
    if (this.leading && mustStepDown(this.lastRenew, performance.now(), this.opts.renewDeadlineMs)) {
      this.leading = false;
      this.opts.log.error('lost leadership: could not renew the lease in time');
      this.opts.onStoppedLeading();
    }
    this.schedule(this.opts.retryPeriodMs);
  }

  private async round(): Promise<void> {
    const { name, namespace, identity } = this.opts;
    let lease: k8s.V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
    const record: LeaseRecord | undefined = lease?.spec === undefined ? undefined : toRecord(lease.spec);
    if (recordChanged(this.obs.record, record)) this.obs = { record, observedAt: performance.now() };

    const d = decide(identity, this.obs, performance.now(), new Date(), Math.round(this.opts.leaseDurationMs / 1000));
    if (d.action === 'wait') return;
    const spec: k8s.V1LeaseSpec = {
      holderIdentity: d.record.holderIdentity,
      leaseDurationSeconds: d.record.leaseDurationSeconds,
      leaseTransitions: d.record.leaseTransitions,
      acquireTime: d.record.acquireTime === undefined ? undefined : new k8s.V1MicroTime(d.record.acquireTime),
      renewTime: d.record.renewTime === undefined ? undefined : new k8s.V1MicroTime(d.record.renewTime),
    };
    const sentAt = performance.now();
    try {
      if (lease === undefined) {
        await this.api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec } });
      } else {
        await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec } });
      }
    } catch (err) {
      // 409: someone else wrote first; observe their record next round.
      if ((err as { code?: number }).code === 409) return;
      throw err;
    }
    this.lastRenew = sentAt;
    this.obs = { record: d.record, observedAt: sentAt };
    if (!this.leading) {
      this.leading = true;
      this.opts.log.info('became leader', { lease: `${namespace}/${name}`, identity });
      this.opts.onStartedLeading();
    }
  }
}

function toRecord(spec: k8s.V1LeaseSpec): LeaseRecord {
  const time = (t: unknown): string | undefined => (t === undefined || t === null ? undefined : t instanceof Date ? t.toISOString() : String(t));
  return {
    holderIdentity: spec.holderIdentity ?? undefined,
    leaseDurationSeconds: spec.leaseDurationSeconds ?? undefined,
    leaseTransitions: spec.leaseTransitions ?? undefined,
    acquireTime: time(spec.acquireTime),
    renewTime: time(spec.renewTime),
  };
}
