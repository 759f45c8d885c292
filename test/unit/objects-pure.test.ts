/**
 * Pure logic of durable objects: id encoding, rendezvous placement, lease
 * decisions (the single-activation invariant) and the turn queue.
 */
import { describe, expect, it } from '@jest/globals';
import { CastellanError } from '../../common/errors.ts';
import { decideClaim, lostInFlight, observeHost, reachable, selfLeaseValid, sessionStatus, placeable, type HostRecord, type LeaseTiming } from '../../sidecar/objects/lease.ts';
import { rendezvous } from '../../sidecar/objects/placement.ts';
import { classNames, decodeId, encodeId, parseIdSegment } from '../../sidecar/objects/subjects.ts';
import { TurnQueue } from '../../sidecar/objects/turn-queue.ts';
import { parseObjectUrl } from '../../sidecar/objects/routes.ts';
import { decodeEnvelope, encodeEnvelope, filterHeaders } from '../../sidecar/objects/wire.ts';

describe('object ids', () => {
  const ids = ['a', 'a.b', 'x*y', 'p>q', 'with space', '🦀 crab', 'ünïcödé', '.', '>', '*', 'a'.repeat(256), '日本語.*>'];
  it.each(ids)('round-trips %p through a subject-safe token', (id) => {
    const tok = encodeId(id);
    expect(tok).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeId(tok)).toBe(id);
    expect(parseIdSegment(encodeURIComponent(id))).toBe(id);
  });

  it('gives distinct ids distinct tokens', () => {
    expect(new Set(ids.map(encodeId)).size).toBe(ids.length);
  });

  it.each([
    ['', 'empty'],
    ['a'.repeat(257), 'too long'],
    ['%E0%A4%A', 'bad percent-encoding'],
    ['%FF', 'invalid UTF-8'],
  ])('rejects %p (%s) with 400 INVALID_ID', (raw) => {
    let err: unknown;
    try {
      parseIdSegment(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CastellanError);
    expect((err as CastellanError).code).toBe('INVALID_ID');
    expect((err as CastellanError).status).toBe(400);
  });

  it('counts characters, not bytes: 256 emoji are fine', () => {
    expect(parseIdSegment(encodeURIComponent('🦀'.repeat(256)))).toBe('🦀'.repeat(256));
  });

  it('names subjects and the stream', () => {
    const n = classNames('castellan', 'default', 'my.counter');
    expect(n.stream).toBe('CASTELLAN_OBJ_default_my_counter');
    expect(n.owner(encodeId('a.b'))).toBe(`castellan.obj.default.my_counter.own.${encodeId('a.b')}`);
    expect(n.host('pod-0')).toBe('castellan.obj.default.my_counter.host.pod-0');
    expect(n.rpc('pod-0', { namespace: 'team-a', serviceAccount: 'web.v2' })).toBe('castellan.rpc.default.my_counter.pod-0.team-a.web_v2');
    expect(n.rpcServe('pod-0')).toBe('castellan.rpc.default.my_counter.pod-0.*.*');
    expect(n.door({ namespace: 'team-a', serviceAccount: 'web' })).toBe('castellan.rpc.default.my_counter._.team-a.web');
    expect(n.doorServe).toBe('castellan.rpc.default.my_counter._.*.*');
  });

  it('parses object URLs, keeping the rest of the path raw', () => {
    expect(parseObjectUrl('/v1/objects/counter/a%2Fb/x/y%20z?q=1&r')).toEqual({ cls: 'counter', id: 'a/b', path: '/x/y%20z', query: 'q=1&r' });
    expect(parseObjectUrl('/v1/objects/counter/id')).toEqual({ cls: 'counter', id: 'id', path: '', query: '' });
    expect(() => parseObjectUrl('/v1/objects/counter')).toThrow(/id/);
    expect(() => parseObjectUrl('/v1/objects/counter/')).toThrow(/empty/);
  });

  it('refuses the reserved /.castellan/ paths (alarm delivery), however they are spelled', () => {
    for (const p of ['/.castellan/alarm', '/%2Ecastellan/alarm', '//.Castellan/alarm', '/.castellan']) {
      expect(() => parseObjectUrl(`/v1/objects/counter/id${p}`)).toThrow(expect.objectContaining({ status: 403, code: 'RESERVED_PATH' }));
    }
    expect(parseObjectUrl('/v1/objects/counter/id/.castellanx').path).toBe('/.castellanx');
    expect(parseObjectUrl('/v1/objects/counter/id/a/.castellan/alarm').path).toBe('/a/.castellan/alarm');
  });
});

describe('rendezvous placement', () => {
  const hosts = ['h0', 'h1', 'h2', 'h3', 'h4'];
  const keys = Array.from({ length: 5000 }, (_, i) => encodeId(`obj-${i}`));

  it('is deterministic and independent of host order', () => {
    for (const k of keys.slice(0, 200)) expect(rendezvous([...hosts].reverse(), k)).toBe(rendezvous(hosts, k));
  });

  it('spreads keys roughly evenly', () => {
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(rendezvous(hosts, k)!, (counts.get(rendezvous(hosts, k)!) ?? 0) + 1);
    for (const h of hosts) expect(counts.get(h)).toBeGreaterThan(keys.length / hosts.length * 0.8);
  });

  it('moves only ~1/N of keys when a host is added, and only the removed host’s keys when one leaves', () => {
    const before = keys.map((k) => rendezvous(hosts, k));
    const added = keys.map((k) => rendezvous([...hosts, 'h5'], k));
    const moved = before.filter((h, i) => h !== added[i]).length;
    expect(moved / keys.length).toBeGreaterThan(0.1);
    expect(moved / keys.length).toBeLessThan(0.25); // ~1/6
    for (let i = 0; i < keys.length; i++) if (before[i] !== added[i]) expect(added[i]).toBe('h5');
    const removed = keys.map((k) => rendezvous(hosts.filter((h) => h !== 'h2'), k));
    for (let i = 0; i < keys.length; i++) if (before[i] !== 'h2') expect(removed[i]).toBe(before[i]);
  });

  it('has no winner without hosts', () => {
    expect(rendezvous([], 'x')).toBeUndefined();
  });
});

describe('leases', () => {
  const t: LeaseTiming = { ttl: 1000, margin: 100 };
  const hb = (sessionId: string, kind: HostRecord['kind'] = 'alive', extra: Partial<HostRecord> = {}): HostRecord => ({ kind, pod: 'A', sessionId, ts: 0, ...extra });
  const owned = (sessionId: string, pod = 'A') => ({ seq: 7, record: { state: 'owned' as const, pod, sessionId, ts: 0 } });
  const self = { pod: 'B', sessionId: 'b1' };

  it('self lease ends TTL − margin after the last acknowledged heartbeat was sent', () => {
    expect(selfLeaseValid(undefined, 0, t)).toBe(false);
    expect(selfLeaseValid(1000, 1899, t)).toBe(true);
    expect(selfLeaseValid(1000, 1900, t)).toBe(false);
  });

  it('an observer waits TTL + margin after its last observation, so the owner has stopped by then', () => {
    const sentAt = 1000;
    const observedAt = 1000; // the earliest possible observation
    const s = observeHost(undefined, 5, hb('a1'), observedAt);
    expect(sessionStatus(s, 'a1', observedAt + t.ttl + t.margin, t)).toBe('live');
    const expiredAt = observedAt + t.ttl + t.margin + 1;
    expect(sessionStatus(s, 'a1', expiredAt, t)).toBe('expired');
    expect(selfLeaseValid(sentAt, expiredAt - 2 * t.margin, t)).toBe(false);
  });

  it('new heartbeats keep a session live; observing the same seq again does not', () => {
    let s = observeHost(undefined, 5, hb('a1'), 0);
    s = observeHost(s, 5, hb('a1'), 900);
    expect(s.observedAt).toBe(0);
    s = observeHost(s, 6, hb('a1'), 900);
    expect(sessionStatus(s, 'a1', 1900, t)).toBe('live');
    expect(placeable(s, 1900, t)).toBe(true);
    expect(placeable(s, 2100, t)).toBe(false);
  });

  it('leave and fenced records end a session at once; a draining host is not placeable', () => {
    const s0 = observeHost(undefined, 5, hb('a1'), 0);
    expect(sessionStatus(observeHost(s0, 6, hb('a1', 'leave'), 10), 'a1', 10, t)).toBe('dead');
    expect(sessionStatus(observeHost(s0, 6, hb('a1', 'fenced'), 10), 'a1', 10, t)).toBe('dead');
    const d = observeHost(s0, 6, hb('a1', 'draining'), 10);
    expect(placeable(d, 10, t)).toBe(false);
    expect(sessionStatus(d, 'a1', 10, t)).toBe('live');
  });

  it('a new session of a pod ends the old one after TTL + margin, or at once when it says the old one was dead', () => {
    const s0 = observeHost(undefined, 5, hb('a1'), 0);
    const s1 = observeHost(s0, 6, hb('a2'), 100);
    expect(sessionStatus(s1, 'a1', 500, t)).toBe('wait');
    expect(sessionStatus(s1, 'a1', 1201, t)).toBe('dead');
    const s2 = observeHost(s0, 6, hb('a2', 'alive', { prevSessionId: 'a1', prevDead: true }), 100);
    expect(sessionStatus(s2, 'a1', 100, t)).toBe('dead');
    // Once seen dead, stays dead even after further sessions.
    const s3 = observeHost(observeHost(s0, 6, hb('a1', 'fenced'), 50), 7, hb('a2'), 60);
    expect(sessionStatus(s3, 'a1', 60, t)).toBe('dead');
  });

  it('decides claims: absent/released → claim with CAS; own → serve; live other → redirect; expired → fence first', () => {
    expect(decideClaim(undefined, self, undefined, 0, t)).toEqual({ action: 'claim', expectSeq: 0 });
    expect(decideClaim({ seq: 3, record: { state: 'released', pod: 'A', sessionId: 'a1', ts: 0 } }, self, undefined, 0, t)).toEqual({ action: 'claim', expectSeq: 3 });
    expect(decideClaim(owned('b1', 'B'), self, undefined, 0, t)).toEqual({ action: 'serve' });
    const live = observeHost(undefined, 5, hb('a1'), 0);
    expect(decideClaim(owned('a1'), self, live, 500, t)).toEqual({ action: 'redirect', pod: 'A' });
    expect(decideClaim(owned('a1'), self, live, 1101, t)).toEqual({ action: 'fence', pod: 'A', sessionId: 'a1', expectHostSeq: 5 });
    const fenced = observeHost(live, 6, hb('a1', 'fenced'), 1200);
    expect(decideClaim(owned('a1'), self, fenced, 1200, t)).toEqual({ action: 'claim', expectSeq: 7 });
  });

  it('never lets a second host claim while the owner may still serve (randomised)', () => {
    // Owner sends heartbeats at random intervals (some lost); an observer sees
    // each delivered heartbeat after a random delay. Whenever the observer
    // would claim (dead) or fence (expired), the owner must not hold a valid lease.
    for (let trial = 0; trial < 200; trial++) {
      let now = 0;
      let lastSent: number | undefined;
      let state: ReturnType<typeof observeHost> | undefined;
      const pending: { at: number; seq: number }[] = [];
      let seq = 0;
      for (let step = 0; step < 200; step++) {
        now += Math.random() * 200;
        if (Math.random() < 0.6) {
          seq++;
          if (Math.random() < 0.9) lastSent = now; // acknowledged
          pending.push({ at: now + Math.random() * 300, seq });
        }
        for (const p of pending.filter((x) => x.at <= now)) state = observeHost(state, p.seq, hb('a1'), now);
        for (let i = pending.length - 1; i >= 0; i--) if (pending[i]!.at <= now) pending.splice(i, 1);
        if (state === undefined) continue;
        const st = sessionStatus(state, 'a1', now, t);
        // The fence's CAS only succeeds if no newer heartbeat was stored; model that: a fence
        // with unseen acknowledged heartbeats fails. If it would succeed, the owner must be expired.
        if (st === 'expired' && state.seq === seq) expect(selfLeaseValid(lastSent, now, t)).toBe(false);
      }
    }
  });
});

describe('requests in flight to a host', () => {
  const t: LeaseTiming = { ttl: 1000, margin: 100 };
  const hb = (sessionId: string, kind: HostRecord['kind'] = 'alive'): HostRecord => ({ kind, pod: 'A', sessionId, ts: 0 });

  it('keeps waiting while the session heartbeats or has left gracefully', () => {
    const s = observeHost(undefined, 1, hb('a1'), 0);
    expect(lostInFlight(s, 'a1', 500, t)).toBe(false);
    expect(lostInFlight(observeHost(s, 2, hb('a1', 'draining'), 600), 'a1', 1500, t)).toBe(false);
    // A graceful leave answered everything it received: the reply is coming (or "no responders").
    expect(lostInFlight(observeHost(s, 2, hb('a1', 'leave'), 600), 'a1', 60_000, t)).toBe(false);
    expect(lostInFlight(undefined, 'a1', 60_000, t)).toBe(false);
  });

  it('gives up when the session is fenced, expired, or replaced by a restart', () => {
    const s = observeHost(undefined, 1, hb('a1'), 0);
    expect(lostInFlight(s, 'a1', 1101, t)).toBe(true);
    expect(lostInFlight(observeHost(s, 2, hb('a1', 'fenced'), 10), 'a1', 20, t)).toBe(true);
    expect(lostInFlight(observeHost(s, 2, hb('a2'), 10), 'a1', 20, t)).toBe(true);
  });

  it("judges a host by its own TTL (in its records), not the observer's: a 1 s caller and a 5 s host", () => {
    const five = observeHost(undefined, 1, { ...hb('a1'), ttl: 5000 }, 0);
    // 2 s without a heartbeat: expired for a 1 s lease, live for the host's 5 s one
    expect(lostInFlight(five, 'a1', 2000, t)).toBe(false);
    expect(placeable(five, 2000, t)).toBe(true);
    expect(reachable(five, 2000, t)).toBe(true);
    expect(sessionStatus(five, 'a1', 2000, t)).toBe('live');
    // past the host's TTL + margin (5000 + 625): expired all the same
    expect(lostInFlight(five, 'a1', 5626, t)).toBe(true);
    expect(placeable(five, 5626, t)).toBe(false);
    expect(sessionStatus(five, 'a1', 5626, t)).toBe('expired');
    // a record without ttl (an older sidecar): the observer's setting
    const old = observeHost(undefined, 1, hb('a1'), 0);
    expect(placeable(old, 2000, t)).toBe(false);
    // and a host with a shorter TTL than the observer's is not kept alive longer than its own lease
    const short = observeHost(undefined, 1, { ...hb('a1'), ttl: 200 }, 0);
    expect(sessionStatus(short, 'a1', 300, { ttl: 5000, margin: 625 })).toBe('expired');
  });
});

describe('turn queue', () => {
  const deferred = () => {
    let resolve!: () => void;
    const p = new Promise<void>((r) => (resolve = r));
    return { p, resolve };
  };

  it('runs Serial turns one at a time in arrival order', async () => {
    const q = new TurnQueue('Serial', 10);
    const order: number[] = [];
    let running = 0;
    let maxRunning = 0;
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        q.run(async () => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await new Promise((r) => setTimeout(r, Math.random() * 5));
          order.push(i);
          running--;
        }),
      ),
    );
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(maxRunning).toBe(1);
    expect(q.isIdle()).toBe(true);
  });

  it('continues after a failed turn', async () => {
    const q = new TurnQueue('Serial', 10);
    await expect(q.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(q.run(() => Promise.resolve(5))).resolves.toBe(5);
  });

  it('answers 429 OBJECT_OVERLOADED beyond the limit, without running the turn', async () => {
    const q = new TurnQueue('Serial', 2);
    const gate = deferred();
    const ran: number[] = [];
    const ps = [0, 1, 2].map((i) => q.run(async () => {
      ran.push(i);
      await gate.p;
    }));
    const over = q.run(async () => {
      ran.push(99);
    });
    await expect(over).rejects.toMatchObject({ status: 429, code: 'OBJECT_OVERLOADED', retryable: true });
    expect(q.depth).toBe(3);
    gate.resolve();
    await Promise.all(ps);
    expect(ran).toEqual([0, 1, 2]);
    await q.whenIdle();
  });

  it('fails every waiting turn without running it, while the running one goes on (stuck object)', async () => {
    const q = new TurnQueue('Serial', 10);
    const gate = deferred();
    const ran: number[] = [];
    const first = q.run(async () => {
      ran.push(0);
      await gate.p;
      return 'first';
    });
    const waiting = [1, 2].map((i) => q.run(async () => {
      ran.push(i);
    }));
    expect(q.failWaiting(new Error('stuck'))).toBe(2);
    for (const w of waiting) await expect(w).rejects.toThrow('stuck');
    expect(q.running).toBe(1);
    // A turn queued after the failure waits for the running one, then runs.
    const later = q.run(async () => {
      ran.push(3);
    });
    gate.resolve();
    await expect(first).resolves.toBe('first');
    await later;
    expect(ran).toEqual([0, 3]);
    await q.whenIdle();
  });

  it('bounds waiting turns by their request bytes', async () => {
    const q = new TurnQueue('Serial', 100, 1_000);
    const gate = deferred();
    const running = q.run(() => gate.p);
    const a = q.run(() => Promise.resolve('a'), 600);
    const b = q.run(() => Promise.resolve('b'), 600);
    await expect(b).rejects.toMatchObject({ status: 429, code: 'OBJECT_OVERLOADED' });
    expect(q.waitingBytes).toBe(600);
    gate.resolve();
    await running;
    await expect(a).resolves.toBe('a');
    expect(q.waitingBytes).toBe(0);
  });

  it('lets Concurrent turns overlap', async () => {
    const q = new TurnQueue('Concurrent', 0);
    const gate = deferred();
    const ps = [0, 1, 2].map(() => q.run(() => gate.p));
    expect(q.running).toBe(3);
    gate.resolve();
    await Promise.all(ps);
    expect(q.isIdle()).toBe(true);
  });
});

describe('wire', () => {
  it('round-trips meta and binary bodies', () => {
    const body = new Uint8Array([0, 255, 10, 13, 0]);
    const { meta, body: b } = decodeEnvelope<{ t: string }>(encodeEnvelope({ t: 'retry', reason: 'x' }, body));
    expect(meta).toEqual({ t: 'retry', reason: 'x' });
    expect([...b]).toEqual([...body]);
  });

  it('drops hop-by-hop headers and those named by Connection', () => {
    expect(filterHeaders(['Host', 'x', 'Connection', 'keep-alive, X-Foo', 'X-Foo', '1', 'X-Bar', '2', 'Transfer-Encoding', 'chunked'])).toEqual([['X-Bar', '2']]);
  });
});
