/**
 * Turn-based delivery for one object. Pure (no I/O).
 *
 * `Serial`: turns run one at a time in the order `run` was called; at most
 * `limit` turns may wait behind the running one, a further call is rejected at
 * once with 429 OBJECT_OVERLOADED (it never ran). `Concurrent`: turns start at
 * once; only counted.
 */
import { Errors } from '../../common/errors.ts';

export type Concurrency = 'Serial' | 'Concurrent';

export class TurnQueue {
  private readonly mode: Concurrency;
  private readonly limit: number;
  private tail: Promise<unknown> = Promise.resolve();
  private waitingCount = 0;
  private runningCount = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(mode: Concurrency, limit: number) {
    this.mode = mode;
    this.limit = limit;
  }

  /** Turns queued or running. */
  get depth(): number {
    return this.waitingCount + this.runningCount;
  }

  get waiting(): number {
    return this.waitingCount;
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

  /** Runs `turn` in its turn. Throws OBJECT_OVERLOADED synchronously-rejected when the queue is full. */
  run<T>(turn: () => Promise<T>): Promise<T> {
    if (this.mode === 'Concurrent') {
      this.runningCount++;
      return this.settle(turn());
    }
    if (this.runningCount + this.waitingCount > this.limit) {
      return Promise.reject(Errors.overloaded(`The object's request queue is full (${this.limit} waiting); retry later.`));
    }
    this.waitingCount++;
    const result = this.tail.then(() => {
      this.waitingCount--;
      this.runningCount++;
      return this.settle(turn());
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async settle<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } finally {
      this.runningCount--;
      if (this.isIdle()) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }
}
