/**
 * Queue-host membership: each queue host's heartbeat chain (its lease, the
 * same records and rules as durable objects, objects/lease.ts) in the queue's
 * meta stream, and every sidecar's view of which hosts are live.
 *
 * - QueueHeartbeat (queue hosts): `alive` record every ~TTL/4 by
 *   compare-and-set on its own host subject. A failed CAS means another host
 *   fenced this session (to promote its messages): the host starts a new
 *   session and re-reads the promotion claims before it serves again.
 * - QueueView (every sidecar using the queue): polls the last record of every
 *   host (direct get) and classifies peers live / expired / dead.
 */
import { randomUUID } from 'node:crypto';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { observeHost, placeable, reachable, selfLeaseValid, type HostRecord, type HostState, type LeaseTiming } from '../objects/lease.ts';
import type { PeerStatus } from './logic.ts';
import { CONFLICT, type QueueStore } from './store.ts';

export class QueueView {
  private readonly store: QueueStore;
  private readonly timing: LeaseTiming;
  private readonly log: Logger;
  private readonly hosts = new Map<string, HostState>();
  private readonly ready: Promise<void>;
  private stopped = false;
  private wake: (() => void) | undefined;
  lastUsed = performance.now();

  constructor(store: QueueStore, timing: LeaseTiming, log: Logger) {
    this.store = store;
    this.timing = timing;
    this.log = log;
    this.ready = this.poll();
    void this.loop();
  }

  whenReady(): Promise<void> {
    return this.ready;
  }

  async poll(): Promise<void> {
    try {
      for (const s of await this.store.list<HostRecord>(this.store.names.hosts)) this.observe(s.seq, s.record);
    } catch (err) {
      this.log.debug('listing queue hosts failed', { error: describeError(err) });
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

  observe(seq: number, record: HostRecord): HostState {
    const next = observeHost(this.hosts.get(record.pod), seq, record, performance.now());
    this.hosts.set(record.pod, next);
    return next;
  }

  host(pod: string): HostState | undefined {
    return this.hosts.get(pod);
  }

  /** Hosts that take new messages (alive heartbeat within TTL + margin), sorted. */
  live(): string[] {
    const now = performance.now();
    return [...this.hosts.values()].filter((h) => placeable(h, now, this.timing)).map((h) => h.record.pod).sort();
  }

  /** Hosts that answer requests (alive or draining), sorted. */
  reachable(): string[] {
    const now = performance.now();
    return [...this.hosts.values()].filter((h) => reachable(h, now, this.timing)).map((h) => h.record.pod).sort();
  }

  isReachable(pod: string): boolean {
    const h = this.hosts.get(pod);
    return h !== undefined && reachable(h, performance.now(), this.timing);
  }

  status(pod: string): PeerStatus {
    const h = this.hosts.get(pod);
    if (h === undefined) return 'expired';
    if (h.record.kind === 'leave' || h.record.kind === 'fenced') return 'dead';
    return performance.now() - h.observedAt > this.timing.ttl + this.timing.margin ? 'expired' : 'live';
  }

  /**
   * Until when (monotonic ms) a failover may still be surfacing messages: for every host that
   * stopped being live recently (killed, left, fenced), its last heartbeat + 2 × (TTL + margin)
   * + 1 s — enough for a standby to notice, fence, claim and announce. 0 when none.
   */
  failoverPendingUntil(now = performance.now()): number {
    let until = 0;
    const window = 2 * (this.timing.ttl + this.timing.margin) + 1_000;
    for (const h of this.hosts.values()) {
      if (reachable(h, now, this.timing) && h.record.kind === 'alive') continue;
      const end = h.observedAt + window;
      if (end > now && end > until) until = end;
    }
    return until;
  }

  /** Every host ever seen. */
  known(): string[] {
    return [...this.hosts.keys()].sort();
  }

  /**
   * Declares `pod`'s current session dead: CAS a `fenced` record over the last
   * heartbeat observed. Fails (false) if the host wrote a newer heartbeat.
   */
  async fence(pod: string, by: string): Promise<boolean> {
    const h = this.hosts.get(pod);
    const record: HostRecord = { kind: 'fenced', pod, sessionId: h?.record.sessionId ?? 'unknown', ts: Date.now(), by };
    const r = await this.store.cas(this.store.names.host(pod), record, h?.seq ?? 0);
    if (r === CONFLICT) {
      await this.poll();
      return false;
    }
    this.observe(r, record);
    return true;
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}

export class QueueHeartbeat {
  private readonly store: QueueStore;
  private readonly pod: string;
  private readonly timing: LeaseTiming;
  private readonly view: QueueView;
  private readonly log: Logger;
  private readonly onFenced: () => void;
  sessionId = randomUUID();
  private seq = 0;
  private started = false;
  private lastSentAt: number | undefined;
  private kind: 'alive' | 'draining' = 'alive';
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(store: QueueStore, pod: string, timing: LeaseTiming, view: QueueView, onFenced: () => void, log: Logger) {
    this.store = store;
    this.pod = pod;
    this.timing = timing;
    this.view = view;
    this.onFenced = onFenced;
    this.log = log;
  }

  leaseValid(now = performance.now()): boolean {
    return this.started && selfLeaseValid(this.lastSentAt, now, this.timing);
  }

  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.beat();
        break;
      } catch (err) {
        if (attempt >= 40) throw err;
        this.log.warn('first queue heartbeat failed; retrying', { error: describeError(err), attempt });
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
        this.log.warn('queue heartbeat failed', { error: describeError(err) });
      }
    }
  }

  private beat(): Promise<void> {
    const next = this.chain.then(() => this.doBeat());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async begin(): Promise<void> {
    const cur = await this.store.last<HostRecord>(this.store.names.host(this.pod));
    this.seq = cur?.seq ?? 0;
    this.started = true;
  }

  private async doBeat(): Promise<void> {
    if (!this.started) await this.begin();
    const record: HostRecord = { kind: this.kind, pod: this.pod, sessionId: this.sessionId, ts: Date.now() };
    const sentAt = performance.now();
    const r = await this.store.cas(this.store.names.host(this.pod), record, this.seq);
    if (r === CONFLICT) {
      const cur = await this.store.last<HostRecord>(this.store.names.host(this.pod));
      if (cur !== undefined && cur.record.sessionId === this.sessionId && (cur.record.kind === 'alive' || cur.record.kind === 'draining')) {
        this.seq = cur.seq;
        return this.doBeat();
      }
      this.lastSentAt = undefined;
      this.started = false;
      const old = this.sessionId;
      this.sessionId = randomUUID();
      this.log.warn('queue host lease was fenced by another host; starting a new session', { oldSession: old, newSession: this.sessionId });
      this.onFenced();
      await this.begin();
      return this.doBeat();
    }
    this.seq = r;
    this.lastSentAt = sentAt;
    this.view.observe(r, record);
  }

  async drain(): Promise<void> {
    this.kind = 'draining';
    await this.beat().catch((err: unknown) => this.log.warn('draining heartbeat failed', { error: describeError(err) }));
  }

  /** Stops renewing and writes `leave`: peers promote this host's messages at once. */
  async leave(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loopDone;
    await this.chain;
    if (!this.started) return;
    const record: HostRecord = { kind: 'leave', pod: this.pod, sessionId: this.sessionId, ts: Date.now() };
    for (let i = 0; i < 3; i++) {
      try {
        await this.store.cas(this.store.names.host(this.pod), record, this.seq);
        return;
      } catch (err) {
        this.log.warn('queue leave record failed', { error: describeError(err) });
        await sleep(100);
      }
    }
  }
}
