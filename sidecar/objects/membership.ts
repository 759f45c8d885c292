/**
 * Host membership of a class: every sidecar's view of which object hosts are
 * live. (Each host's own heartbeat chain is leases/heartbeat.ts.)
 *
 * - ClassView (every sidecar): polls the last record of every host of a class
 *   (direct get, every ~TTL/4) and folds them in with observeHost, on this
 *   process's monotonic clock.
 */
import { describeError, type Logger } from '../../common/logger.ts';
import type { ObjectStore, Stored } from './ownership-store.ts';
import { observeHost, placeable, reachable, type HostRecord, type HostState, type LeaseTiming } from './lease.ts';

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
