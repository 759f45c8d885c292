/**
 * Host membership of a class: each object host's heartbeat chain (its host
 * lease), and every sidecar's view of which hosts are live.
 *
 * - HostHeartbeat (object hosts): writes `alive` records every ~TTL/4 by
 *   compare-and-set on its own host subject; the send time of the last
 *   acknowledged one bounds how long the host may serve (lease.ts). If the CAS
 *   fails, somebody fenced this session: the host drops everything it owns and
 *   starts a new session. `draining` and `leave` records are written at shutdown.
 * - ClassView (every sidecar): polls the last record of every host of a class
 *   (direct get, every ~TTL/4) and folds them in with observeHost, on this
 *   process's monotonic clock.
 */
import { randomUUID } from 'node:crypto';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { CONFLICT, type ObjectStore, type Stored } from './ownership-store.ts';
import { observeHost, placeable, reachable, selfLeaseValid, selfLeaseEnd, type HostRecord, type HostState, type LeaseTiming } from './lease.ts';

export class ClassView {
  readonly cls: string;
  private readonly store: ObjectStore;
  readonly timing: LeaseTiming;
  private readonly log: Logger;
  private readonly hosts = new Map<string, HostState>();
  private readonly ready: Promise<void>;
  private stopped = false;
  private lastUsed = performance.now();
  private wake: (() => void) | undefined;

  constructor(cls: string, store: ObjectStore, timing: LeaseTiming, log: Logger) {
    this.cls = cls;
    this.store = store;
    this.timing = timing;
    this.log = log;
    this.ready = this.poll();
    void this.loop();
  }

  /** Resolves after the first listing (or its failure). */
  whenReady(): Promise<void> {
    this.lastUsed = performance.now();
    return this.ready;
  }

  /** Time since the view was last asked for (the owner may drop idle views). */
  idleFor(now: number): number {
    return now - this.lastUsed;
  }

  private async poll(): Promise<void> {
    try {
      for (const s of await this.store.listHosts(this.cls)) this.observe(s);
    } catch (err) {
      this.log.debug('listing hosts failed', { cls: this.cls, error: describeError(err) });
    }
  }

  private async loop(): Promise<void> {
    await this.ready;
    while (!this.stopped) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.max(50, this.timing.ttl / 4)).unref();
      });
      if (this.stopped) break;
      await this.poll();
    }
  }

  /** Polls now instead of at the next tick. */
  refresh(): Promise<void> {
    return this.poll();
  }

  observe(s: Stored<HostRecord>): HostState {
    const pod = s.record.pod;
    const next = observeHost(this.hosts.get(pod), s.seq, s.record, performance.now());
    this.hosts.set(pod, next);
    return next;
  }

  host(pod: string): HostState | undefined {
    return this.hosts.get(pod);
  }

  /** Hosts that take new objects now. */
  placeable(exclude: ReadonlySet<string> = new Set()): string[] {
    const now = performance.now();
    this.lastUsed = now;
    return [...this.hosts.values()].filter((h) => placeable(h, now, this.timing) && !exclude.has(h.record.pod)).map((h) => h.record.pod);
  }

  /** Whether a request may be sent to `pod` (alive or draining, not expired). */
  reachable(pod: string): boolean {
    const h = this.hosts.get(pod);
    return h !== undefined && reachable(h, performance.now(), this.timing);
  }

  /** Any host ever registered (the class has had hosts). */
  get size(): number {
    return this.hosts.size;
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}

/** Lazily started views, one per class this sidecar talks to. */
export class Membership {
  private readonly views = new Map<string, ClassView>();
  private readonly store: ObjectStore;
  private readonly timing: LeaseTiming;
  private readonly log: Logger;

  constructor(store: ObjectStore, timing: LeaseTiming, log: Logger) {
    this.store = store;
    this.timing = timing;
    this.log = log;
  }

  view(cls: string): ClassView {
    let v = this.views.get(cls);
    if (v === undefined) {
      v = new ClassView(cls, this.store, this.timing, this.log);
      this.views.set(cls, v);
    }
    return v;
  }

  stop(): void {
    for (const v of this.views.values()) v.stop();
    this.views.clear();
  }
}

export interface HeartbeatEvents {
  /** This session was fenced by another host: everything it owned is gone. */
  onFenced(oldSessionId: string): void;
}

/** The object host's own lease: the heartbeat chain of one pod for one class. */
export class HostHeartbeat {
  private readonly store: ObjectStore;
  private readonly cls: string;
  private readonly pod: string;
  private readonly timing: LeaseTiming;
  private readonly log: Logger;
  private readonly events: HeartbeatEvents;
  private readonly view: ClassView;
  sessionId = randomUUID();
  private seq = 0;
  private started = false;
  private lastSentAt: number | undefined;
  private kind: 'alive' | 'draining' = 'alive';
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private prev: { sessionId: string; dead: boolean } | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(store: ObjectStore, cls: string, pod: string, timing: LeaseTiming, view: ClassView, events: HeartbeatEvents, log: Logger) {
    this.store = store;
    this.cls = cls;
    this.pod = pod;
    this.timing = timing;
    this.view = view;
    this.events = events;
    this.log = log;
  }

  /** Whether this host may serve right now (lease.ts rule 1b). */
  leaseValid(now = performance.now()): boolean {
    return this.started && selfLeaseValid(this.lastSentAt, now, this.timing);
  }

  leaseEnd(): number {
    return selfLeaseEnd(this.lastSentAt, this.timing);
  }

  /** Writes the first heartbeat of this session, then renews every TTL/4. */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.beat();
        break;
      } catch (err) {
        if (attempt >= 20) throw err;
        this.log.warn('first heartbeat failed; retrying', { error: describeError(err), attempt });
        await sleep(250);
      }
    }
    this.loopDone = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.max(25, this.timing.ttl / 4)).unref();
      });
      if (this.stopped) break;
      try {
        await this.beat();
      } catch (err) {
        this.log.warn('heartbeat failed', { error: describeError(err), leaseValidForMs: Math.round(this.leaseEnd() - performance.now()) });
      }
    }
  }

  /** Begins a session: CAS over whatever the pod's host subject holds now. */
  private async beginSession(): Promise<void> {
    const cur = await this.store.readHost(this.cls, this.pod);
    this.seq = cur?.seq ?? 0;
    if (cur !== undefined && cur.record.sessionId !== this.sessionId) {
      this.prev = { sessionId: cur.record.sessionId, dead: cur.record.kind === 'leave' || cur.record.kind === 'fenced' };
    }
    this.started = true;
  }

  /** One heartbeat; calls are serialised so two never race on the same expected sequence. */
  private beat(): Promise<void> {
    const next = this.chain.then(() => this.doBeat());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async doBeat(): Promise<void> {
    if (!this.started) await this.beginSession();
    const record: HostRecord = { kind: this.kind, pod: this.pod, sessionId: this.sessionId, ts: Date.now() };
    if (this.prev !== undefined) {
      record.prevSessionId = this.prev.sessionId;
      record.prevDead = this.prev.dead;
    }
    const sentAt = performance.now();
    const r = await this.store.writeHost(this.cls, this.pod, this.seq, record);
    if (r === CONFLICT) {
      const cur = await this.store.readHost(this.cls, this.pod);
      if (cur !== undefined && cur.record.sessionId === this.sessionId && (cur.record.kind === 'alive' || cur.record.kind === 'draining')) {
        // An earlier heartbeat of ours landed although its ack was lost: nobody
        // fenced us, continue the chain from it (without extending the lease).
        this.seq = cur.seq;
        return this.doBeat();
      }
      const old = this.sessionId;
      this.lastSentAt = undefined;
      this.sessionId = randomUUID();
      this.started = false;
      this.prev = undefined;
      this.log.warn('host lease was fenced by another host; starting a new session', { oldSession: old, newSession: this.sessionId });
      this.events.onFenced(old);
      await this.beginSession();
      return this.doBeat();
    }
    this.seq = r;
    this.lastSentAt = sentAt;
    this.view.observe({ seq: r, record });
  }

  /** Marks the host draining (no new placements) and publishes it at once. */
  async drain(): Promise<void> {
    this.kind = 'draining';
    await this.beat().catch((err: unknown) => this.log.warn('draining heartbeat failed', { error: describeError(err) }));
  }

  /** Stops renewing and writes `leave` (only after the host released everything it owned). */
  async leave(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loopDone;
    if (!this.started) return;
    const record: HostRecord = { kind: 'leave', pod: this.pod, sessionId: this.sessionId, ts: Date.now() };
    for (let i = 0; i < 3; i++) {
      try {
        const r = await this.store.writeHost(this.cls, this.pod, this.seq, record);
        if (r !== CONFLICT) this.log.info('left the class', { cls: this.cls });
        return;
      } catch (err) {
        this.log.warn('leave record failed', { error: describeError(err) });
        await sleep(100);
      }
    }
  }

  /** Stops renewing without a leave record (the lease simply runs out). */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}
