/**
 * The operator's reading of object host records (operator/assets/object-hosts.ts):
 * stuck objects reported by live hosts become Warning Events; dead or stale
 * hosts' last records are ignored; messages are stable across refreshes so the
 * recorder's de-duplication holds them to one Event per stuck request.
 */
import { describe, expect, it } from '@jest/globals';
import { stuckWarnings } from '../../operator/assets/object-hosts.ts';
import type { HostRecord } from '../../sidecar/objects/lease.ts';

const now = 1_000_000;
const host = (over: Partial<HostRecord>): HostRecord => ({ kind: 'alive', pod: 'counter-0', sessionId: 's', ts: now - 500, ...over });

describe('stuckWarnings', () => {
  it('names each stuck object of a live host, and says how many more there are', () => {
    const w = stuckWarnings('counter', [host({ stuck: { count: 7, objects: [{ id: 'a', rid: 'r1', forMs: 70_000 }, { id: 'b', rid: 'r2', forMs: 61_000 }] } })], now, 30_000);
    expect(w.map((x) => x.reason)).toEqual(['ObjectStuck', 'ObjectStuck', 'ObjectStuck']);
    expect(w[0]!.message).toMatch(/counter\/a on pod counter-0 .*request r1/);
    expect(w[1]!.message).toMatch(/counter\/b .*request r2/);
    expect(w[2]!.message).toMatch(/7 objects of counter stuck .*5 not named/);
  });

  it('is silent for hosts with nothing stuck, dead hosts and records older than maxAge', () => {
    const stuck = { count: 1, objects: [{ id: 'a', rid: 'r1', forMs: 70_000 }] };
    expect(stuckWarnings('counter', [host({}), host({ kind: 'leave', stuck }), host({ kind: 'fenced', stuck }), host({ ts: now - 31_000, stuck })], now, 30_000)).toEqual([]);
    expect(stuckWarnings('counter', [host({ kind: 'draining', stuck })], now, 30_000)).toHaveLength(1);
  });

  it('gives the same message while the same request stays stuck (one Event per ten minutes)', () => {
    const a = stuckWarnings('c', [host({ stuck: { count: 1, objects: [{ id: 'a', rid: 'r1', forMs: 61_000 }] } })], now, 30_000);
    const b = stuckWarnings('c', [host({ ts: now, stuck: { count: 1, objects: [{ id: 'a', rid: 'r1', forMs: 91_000 }] } })], now, 30_000);
    expect(a).toEqual(b);
  });
});
