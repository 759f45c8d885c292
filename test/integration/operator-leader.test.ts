/**
 * Leader election against a real kube-apiserver: one leader at a time; a
 * graceful leader hands over at once; a silent (crashed) holder is replaced
 * only after the lease duration.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/logger.ts';
import { sleep, waitFor } from '../../common/net.ts';
import { LeaderElector } from '../../operator/runtime/leader-election.ts';
import { startKube, type TestKube } from '../harness/kube.ts';

describe('LeaderElector', () => {
  let kube: TestKube;
  const electors: LeaderElector[] = [];

  beforeAll(async () => {
    kube = await startKube(1);
  }, 240_000);

  afterAll(async () => {
    await Promise.all(electors.map((e) => e.stop()));
    await kube?.dispose();
  }, 90_000);

  function elector(identity: string, name: string, events: string[], leaseDurationMs = 3_000): LeaderElector {
    const e = new LeaderElector({
      kc: kube.kc,
      namespace: 'default',
      name,
      identity,
      leaseDurationMs,
      renewDeadlineMs: leaseDurationMs - 1_000,
      retryPeriodMs: 300,
      log: logger('test.leader', { identity }),
      onStartedLeading: () => events.push(`${identity}:start`),
      onStoppedLeading: () => events.push(`${identity}:stop`),
    });
    electors.push(e);
    return e;
  }

  it('elects exactly one leader and hands over at once on a graceful stop', async () => {
    const events: string[] = [];
    // A 20 s lease: a handover well inside it can only be the graceful release, never an
    // expiry, however slow a loaded machine is.
    const a = elector('a', 'castellan-operator', events, 20_000);
    a.start();
    await waitFor('a to lead', async () => (a.isLeader() ? true : undefined), { timeoutMs: 10_000 });
    const b = elector('b', 'castellan-operator', events, 20_000);
    b.start();
    await sleep(1_500);
    expect(b.isLeader()).toBe(false);

    const t0 = Date.now();
    await a.stop();
    await waitFor('b to lead', async () => (b.isLeader() ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(a.isLeader()).toBe(false);
    expect(events).toEqual(['a:start', 'b:start']);
  }, 30_000);

  it('takes over from a holder that stopped renewing only after the lease duration', async () => {
    const coord = kube.kc.makeApiClient(k8s.CoordinationV1Api);
    await coord.createNamespacedLease({
      namespace: 'default',
      body: {
        metadata: { name: 'crashed' },
        spec: { holderIdentity: 'ghost', leaseDurationSeconds: 3, renewTime: new k8s.V1MicroTime(), leaseTransitions: 4 },
      },
    });
    const events: string[] = [];
    const c = elector('c', 'crashed', events);
    const t0 = Date.now();
    c.start();
    await sleep(2_000);
    expect(c.isLeader()).toBe(false);
    await waitFor('c to lead', async () => (c.isLeader() ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3_000);
    const lease = await coord.readNamespacedLease({ name: 'crashed', namespace: 'default' });
    expect(lease.spec?.holderIdentity).toBe('c');
    expect(lease.spec?.leaseTransitions).toBe(5);
  }, 30_000);
});
