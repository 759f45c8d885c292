/**
 * A host's own lease: the heartbeat chain of one pod, shared by object hosts
 * (per class) and queue hosts (per queue). The records and the rules that make
 * them a lease are in objects/lease.ts; where the records live is the caller's
 * business (a HostRecordStore over its stream).
 *
 * The chain writes an `alive` (or, while draining, `draining`) record every
 * ~TTL/4 by compare-and-set on the pod's host subject, carrying this host's
 * TTL (observers judge its heartbeats by it: lease.ts hostTiming). The send time of the
 * last acknowledged write bounds how long the host may serve. A failed CAS
 * means another host fenced this session: the host forgets everything it
 * held (onFenced) and starts a new session. `leave` is written at shutdown,
 * after the host released everything.
 */
import { randomUUID } from 'node:crypto';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { selfLeaseEnd, selfLeaseValid, type HostRecord, type LeaseTiming } from '../objects/lease.ts';
import { CONFLICT, type CasResult } from '../objects/ownership-store.ts';

/** The pod's host subject: last record, and compare-and-set on its sequence (0 = absent). */
export interface HostRecordStore {
  read(pod: string): Promise<{ seq: number; record: HostRecord } | undefined>;
  write(pod: string, expectSeq: number, record: HostRecord): Promise<CasResult>;
}

export interface HeartbeatEvents {
  /** This session was fenced by another host: everything it owned is gone. */
  onFenced(oldSessionId: string): void;
  /** Every record this chain stored (so the host's own view sees it at once). */
  onWritten(seq: number, record: HostRecord): void;
}

export interface HeartbeatOptions {
  pod: string;
  timing: LeaseTiming;
  /** First-heartbeat attempts before start() gives up. */
  startAttempts?: number;
  /** What the host reports about itself with every heartbeat (object hosts: their stuck objects). */
  report?: () => Pick<HostRecord, 'stuck'>;
  /** Whether the first heartbeat offers the host for placements (default true); setPlaceable changes it. */
  placeable?: boolean;
}

export class HostHeartbeat {
  private readonly store: HostRecordStore;
  private readonly pod: string;
  private readonly timing: LeaseTiming;
  private readonly startAttempts: number;
  private readonly report: (() => Pick<HostRecord, 'stuck'>) | undefined;
  private readonly log: Logger;
  private readonly events: HeartbeatEvents;
  sessionId = randomUUID();
  private seq = 0;
  private started = false;
  private lastSentAt: number | undefined;
  private kind: 'alive' | 'draining' = 'alive';
  private drainingForGood = false;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private prev: { sessionId: string; dead: boolean } | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(store: HostRecordStore, opts: HeartbeatOptions, events: HeartbeatEvents, log: Logger) {
    this.store = store;
    this.pod = opts.pod;
    this.timing = opts.timing;
    this.startAttempts = opts.startAttempts ?? 20;
    this.report = opts.report;
    this.kind = opts.placeable === false ? 'draining' : 'alive';
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
        if (attempt >= this.startAttempts) throw err;
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
    const cur = await this.store.read(this.pod);
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
    const record: HostRecord = { kind: this.kind, pod: this.pod, sessionId: this.sessionId, ts: Date.now(), ttl: this.timing.ttl, ...this.report?.() };
    if (this.prev !== undefined) {
      record.prevSessionId = this.prev.sessionId;
      record.prevDead = this.prev.dead;
    }
    const sentAt = performance.now();
    const r = await this.store.write(this.pod, this.seq, record);
    if (r === CONFLICT) {
      const cur = await this.store.read(this.pod);
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
    this.events.onWritten(r, record);
  }

  /**
   * Whether the host takes new placements (`alive`) or not (`draining`:
   * still reachable for what it owns), published at once. Object hosts use
   * it while their app is down (and before it first answered). No effect
   * once draining for good.
   */
  async setPlaceable(placeable: boolean): Promise<void> {
    if (this.stopped || this.drainingForGood) return;
    const kind = placeable ? 'alive' : 'draining';
    if (this.kind === kind) return;
    this.kind = kind;
    await this.beat().catch((err: unknown) => this.log.warn('heartbeat after a placement change failed', { error: describeError(err) }));
  }

  /** Marks the host draining (no new placements) and publishes it at once. */
  async drain(): Promise<void> {
    this.drainingForGood = true;
    this.kind = 'draining';
    await this.beat().catch((err: unknown) => this.log.warn('draining heartbeat failed', { error: describeError(err) }));
  }

  /** Stops renewing and writes `leave` (only after the host released everything it owned). */
  async leave(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loopDone;
    await this.chain;
    if (!this.started) return;
    const record: HostRecord = { kind: 'leave', pod: this.pod, sessionId: this.sessionId, ts: Date.now(), ttl: this.timing.ttl };
    for (let i = 0; i < 3; i++) {
      try {
        const r = await this.store.write(this.pod, this.seq, record);
        if (r !== CONFLICT) {
          this.events.onWritten(r, record);
          this.log.info('host left');
        }
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
