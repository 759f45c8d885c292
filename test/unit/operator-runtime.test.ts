import { describe, expect, it } from '@jest/globals';
import { setCondition, conditionsEqual, getCondition } from '../../operator/runtime/conditions.ts';
import { backoffDelay, WorkQueue, type Clock } from '../../operator/runtime/workqueue.ts';
import { decide, mustStepDown, recordChanged } from '../../operator/runtime/leader-decision.ts';

/** A manual clock: timers fire only when the test advances time. */
function fakeClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  let id = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout: (fn, ms) => {
      timers.set(++id, { at: now + ms, fn });
      return id;
    },
    clearTimeout: (h) => void timers.delete(h as number),
    advance(ms) {
      now += ms;
      for (const [k, t] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (t.at <= now) {
          timers.delete(k);
          t.fn();
        }
      }
    },
  };
}

describe('WorkQueue', () => {
  it('de-duplicates queued keys and keeps FIFO order', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands a key in flight to a second worker, and re-queues it after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    q.add('a');
    expect(q.length).toBe(0);
    q.done(k!);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('wakes a waiting worker on add', async () => {
    const q = new WorkQueue();
    const pending = q.get();
    q.add('x');
    await expect(pending).resolves.toBe('x');
  });

  it('backs off per key exponentially and resets on forget', () => {
    const clock = fakeClock();
    const q = new WorkQueue({ baseMs: 100, maxMs: 1_000, clock });
    expect([q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a')]).toEqual([100, 200, 400, 800, 1000]);
    expect(q.failureCount('a')).toBe(5);
    q.forget('a');
    expect(q.retry('a')).toBe(100);
  });

  it('queues a retried key only when its delay has passed', async () => {
    const clock = fakeClock();
    const q = new WorkQueue({ baseMs: 100, maxMs: 1_000, clock });
    q.retry('a');
    clock.advance(99);
    expect(q.length).toBe(0);
    clock.advance(1);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('an immediate add overrides a pending delay', () => {
    const clock = fakeClock();
    const q = new WorkQueue({ baseMs: 10_000, clock });
    q.retry('a');
    q.add('a');
    expect(q.length).toBe(1);
    clock.advance(20_000);
    expect(q.length).toBe(1);
  });

  it('shutdown releases waiting workers', async () => {
    const q = new WorkQueue();
    const pending = q.get();
    q.shutdown();
    await expect(pending).resolves.toBeUndefined();
    await expect(q.get()).resolves.toBeUndefined();
  });

  it('computes capped backoff delays', () => {
    expect(backoffDelay(0, { baseMs: 5, maxMs: 100 })).toBe(0);
    expect(backoffDelay(1, { baseMs: 5, maxMs: 100 })).toBe(5);
    expect(backoffDelay(100, { baseMs: 5, maxMs: 100 })).toBe(100);
  });
});

describe('setCondition', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-01T00:05:00Z');

  it('adds a condition with a transition time', () => {
    const list = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting' }, t0);
    expect(list).toEqual([{ type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting', lastTransitionTime: '2026-01-01T00:00:00Z' }]);
  });

  it('keeps lastTransitionTime when only reason or message change', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: '0/2' }, t0);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Pending', message: '1/2' }, t1);
    expect(getCondition(b, 'Ready')?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(getCondition(b, 'Ready')?.message).toBe('1/2');
  });

  it('moves lastTransitionTime when the status flips', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: '' }, t0);
    const b = setCondition(a, { type: 'Ready', status: 'True', reason: 'AllReady', message: '' }, t1);
    expect(getCondition(b, 'Ready')?.lastTransitionTime).toBe('2026-01-01T00:05:00Z');
    expect(a[0]?.status).toBe('False');
  });

  it('detects no-op updates', () => {
    const a = setCondition([], { type: 'Ready', status: 'True', reason: 'R', message: 'm', observedGeneration: 2 }, t0);
    const b = setCondition(a, { type: 'Ready', status: 'True', reason: 'R', message: 'm', observedGeneration: 2 }, t1);
    expect(conditionsEqual(a, b)).toBe(true);
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'R', message: 'm', observedGeneration: 3 }, t1);
    expect(conditionsEqual(b, c)).toBe(false);
  });
});

describe('leader election decisions', () => {
  const wall = new Date('2026-01-01T00:00:00Z');

  it('acquires an unheld lease at once', () => {
    const d = decide('op-a', { record: undefined, observedAt: 0 }, 0, wall, 15);
    expect(d).toMatchObject({ action: 'acquire', record: { holderIdentity: 'op-a', leaseDurationSeconds: 15, leaseTransitions: 0 } });
  });

  it('renews its own lease', () => {
    const d = decide('op-a', { record: { holderIdentity: 'op-a', leaseTransitions: 3 }, observedAt: 0 }, 1_000, wall, 15);
    expect(d).toMatchObject({ action: 'renew', record: { holderIdentity: 'op-a', leaseTransitions: 3 } });
  });

  it('waits while another holder may still be renewing, measured on its own clock', () => {
    const record = { holderIdentity: 'op-b', leaseDurationSeconds: 15, renewTime: '1999-01-01T00:00:00.000000Z' };
    // The holder's renewTime is far in the past by wall clock, but we saw it change 5 s ago: wait.
    const d = decide('op-a', { record, observedAt: 10_000 }, 15_000, wall, 15);
    expect(d).toEqual({ action: 'wait', holder: 'op-b', retryInMs: 10_000 });
  });

  it('takes over after the lease duration passes without a change, counting the transition', () => {
    const record = { holderIdentity: 'op-b', leaseDurationSeconds: 15, leaseTransitions: 1 };
    const d = decide('op-a', { record, observedAt: 0 }, 15_000, wall, 15);
    expect(d).toMatchObject({ action: 'acquire', record: { holderIdentity: 'op-a', leaseTransitions: 2 } });
  });

  it('steps down when renewals fail past the deadline', () => {
    expect(mustStepDown(0, 9_999, 10_000)).toBe(false);
    expect(mustStepDown(0, 10_000, 10_000)).toBe(true);
  });

  it('notices renewals and new holders', () => {
    expect(recordChanged({ holderIdentity: 'a', renewTime: '1' }, { holderIdentity: 'a', renewTime: '1' })).toBe(false);
    expect(recordChanged({ holderIdentity: 'a', renewTime: '1' }, { holderIdentity: 'a', renewTime: '2' })).toBe(true);
    expect(recordChanged(undefined, { holderIdentity: 'a' })).toBe(true);
  });
});
