/**
 * Turn-based delivery for one object. Pure (no I/O).
 *
 * `Serial`: turns run one at a time in the order `run` was called; a turn
 * ends when the promise its function returned settles, and only then does the
 * next one start (the host makes that promise settle when the app answered,
 * never when a caller stopped waiting). At most `limit` turns, and at most
 * `maxBytes` of their request bodies, may wait behind the running one; a
 * further call is rejected at once with 429 OBJECT_OVERLOADED (it never ran).
 * `failWaiting` rejects every waiting turn without running it (the object is
 * stuck). `Concurrent`: turns start at once; only counted.
 */
import { Errors } from '../../common/errors.ts';

export type Concurrency = 'Serial' | 'Concurrent';

interface Waiter {
  start: () => void;
  fail: (err: unknown) => void;
  bytes: number;
}

export class TurnQueue {
  private readonly mode: Concurrency;
  private readonly limit: number;
  private readonly maxBytes: number;
  private readonly waiters: Waiter[] = [];
  private waitingBytesCount = 0;
  private runningCount = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(mode: Concurrency, limit: number, maxBytes = Number.POSITIVE_INFINITY) {
    this.mode = mode;
    this.limit = limit;
    this.maxBytes = maxBytes;
  }

  /** Turns queued or running. */
  get depth(): number {
    return this.waiters.length + this.runningCount;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Request bytes of the waiting turns. */
  get waitingBytes(): number {
    return this.waitingBytesCount;
  }

  get running(): number {
    return this.runningCount;
  }

  isIdle(): boolean {
    return this.depth === 0;
  }

  /** Resolves the next time the queue has no turn waiting or running. */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Runs `turn` in its turn; rejects with OBJECT_OVERLOADED (without running it) when the queue is full. */
  run<T>(turn: () => Promise<T>, bytes = 0): Promise<T> {
    if (this.mode === 'Concurrent' || (this.runningCount === 0 && this.waiters.length === 0)) return this.start(turn);
    if (this.runningCount + this.waiters.length > this.limit) {
      return Promise.reject(Errors.overloaded(`The object's request queue is full (${this.limit} waiting); retry later.`));
    }
    if (this.waiters.length > 0 && this.waitingBytesCount + bytes > this.maxBytes) {
      return Promise.reject(Errors.overloaded(`The object's request queue is full (${this.waitingBytesCount} bytes of requests waiting); retry later.`));
    }
    return new Promise<T>((resolve, reject) => {
      this.waitingBytesCount += bytes;
      this.waiters.push({
        start: () => {
          this.start(turn).then(resolve, reject);
        },
        fail: reject,
        bytes,
      });
    });
  }

  /** Rejects every waiting turn with `err`; none of them runs. The running turn goes on. */
  failWaiting(err: unknown): number {
    const failed = this.waiters.splice(0);
    this.waitingBytesCount = 0;
    for (const w of failed) w.fail(err);
    this.notifyIfIdle();
    return failed.length;
  }

  private start<T>(turn: () => Promise<T>): Promise<T> {
    this.runningCount++;
    let p: Promise<T>;
    try {
      p = turn();
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.finally(() => {
      this.runningCount--;
      const next = this.mode === 'Serial' && this.runningCount === 0 ? this.waiters.shift() : undefined;
      if (next !== undefined) {
        this.waitingBytesCount -= next.bytes;
        next.start();
        return;
      }
      this.notifyIfIdle();
    });
  }

  private notifyIfIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
