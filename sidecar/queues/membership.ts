/**
 * Queue-host membership: every sidecar's view of which hosts of a queue are
 * live. Each queue host's own lease is the heartbeat chain of
 * leases/heartbeat.ts (the same records and rules as durable objects,
 * objects/lease.ts) in the queue's meta stream; when another host fences it
 * (to promote its messages) it starts a new session and re-reads the
 * promotion claims before it serves again.
 *
 * - QueueView (every sidecar using the queue): polls the last record of every
 *   host (direct get) and classifies peers live / expired / dead.
 */
import { describeError, type Logger } from '../../common/logger.ts';
import { observeHost, placeable, reachable, type HostRecord, type HostState, type LeaseTiming } from '../objects/lease.ts';
import type { PeerStatus } from './logic.ts';
import { CONFLICT, type QueueStore } from './store.ts';

export class QueueView {
  private readonly store: QueueStore;
  readonly timing: LeaseTiming;
  private readonly log: Logger;
  private readonly hosts = new Map<string, HostState>();
  /** Hosts that failed to answer a request, and when (see suspect). */
  private readonly suspects = new Map<string, number>();
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
      const suspectedAt = this.suspects.get(h.record.pod);
      if (suspectedAt !== undefined && h.observedAt <= suspectedAt) {
        // It stopped answering before its lease visibly lapsed: count from then.
        const end = suspectedAt + window;
        if (end > now && end > until) until = end;
        continue;
      }
      if (reachable(h, now, this.timing) && h.record.kind === 'alive') continue;
      const end = h.observedAt + window;
      if (end > now && end > until) until = end;
    }
    return until;
  }

  /**
   * A request to `pod` went unanswered (no responders, timeout): it may have
   * died although its lease has not visibly lapsed yet. Until it heartbeats
   * again, failoverPendingUntil counts it as failing over.
   */
  suspect(pod: string, now = performance.now()): void {
    if (this.hosts.has(pod)) this.suspects.set(pod, now);
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
