/**
 * The controller work queue (client-go's rate-limited queue, in small):
 *
 * - a key is queued at most once, however often it is added (de-duplication);
 * - a key being processed is never handed to a second worker; if it is added
 *   meanwhile it is processed again after `done` (so no event is lost);
 * - `retry` re-adds a key after a per-key exponential backoff (base·2^n, capped),
 *   `forget` resets that key's backoff after a success.
 *
 * Pure in-memory logic with an injectable clock and timer, tested without I/O.
 */

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/** Delay before the `failures`-th retry: base·2^(failures−1), capped at max. */
export function backoffDelay(failures: number, opts: BackoffOptions): number {
  if (failures <= 0) return 0;
  return Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(failures - 1, 30));
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, unknown>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private closed = false;
  private readonly backoff: BackoffOptions;
  private readonly clock: Clock;

  constructor(opts: Partial<BackoffOptions> & { clock?: Clock } = {}) {
    this.backoff = { baseMs: opts.baseMs ?? 500, maxMs: opts.maxMs ?? 60_000 };
    this.clock = opts.clock ?? realClock;
  }

  /** Queues `key` now (no-op if already queued; re-queued after `done` if in flight). */
  add(key: string): void {
    if (this.closed) return;
    const timer = this.delayed.get(key);
    if (timer !== undefined) {
      this.clock.clearTimeout(timer);
      this.delayed.delete(key);
    }
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.processing.add(key);
      waiter(key);
      return;
    }
    this.queued.add(key);
    this.queue.push(key);
  }

  /** Queues `key` after `ms` (an earlier pending delay for the key wins). */
  addAfter(key: string, ms: number): void {
    if (this.closed) return;
    if (ms <= 0) return this.add(key);
    if (this.delayed.has(key) || this.queued.has(key)) return;
    const timer = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, timer);
  }

  /** Re-queues a failed key after its backoff; returns the delay used. */
  retry(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = backoffDelay(n, this.backoff);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count after a successful reconcile. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process, waiting for one; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` processed; if it was added meanwhile it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  get length(): number {
    return this.queue.length;
  }

  /** Stops handing out keys; pending `get`s resolve to undefined. */
  shutdown(): void {
    this.closed = true;
    for (const t of this.delayed.values()) this.clock.clearTimeout(t);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
