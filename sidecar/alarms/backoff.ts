/**
 * Alarm retry schedule, pure: exponential backoff from a base (2 s per SPEC
 * §2.2), doubling per retry, capped; and when to give up.
 */

export interface AlarmRetryPolicy {
  /** Delay before the first retry (ms). */
  baseMs: number;
  /** Longest delay between retries (ms). */
  maxDelayMs: number;
  /** Retries after the first attempt (SPEC: at least 6). */
  maxRetries: number;
}

export const DEFAULT_ALARM_RETRY: AlarmRetryPolicy = { baseMs: 2_000, maxDelayMs: 5 * 60_000, maxRetries: 8 };

/** Delay before retry number `retry` (1 = first retry). */
export function retryDelay(retry: number, p: AlarmRetryPolicy): number {
  if (retry < 1) return 0;
  return Math.min(p.maxDelayMs, p.baseMs * 2 ** Math.min(30, retry - 1));
}

/** After a failed attempt with retry count `retryCount` (0 = first attempt): the next delay, or give up. */
export function afterFailure(retryCount: number, p: AlarmRetryPolicy): { retry: true; delayMs: number } | { retry: false } {
  const next = retryCount + 1;
  if (next > p.maxRetries) return { retry: false };
  return { retry: true, delayMs: retryDelay(next, p) };
}

/** The whole schedule (delays of retries 1..maxRetries), for docs and tests. */
export function retrySchedule(p: AlarmRetryPolicy): number[] {
  return Array.from({ length: p.maxRetries }, (_, i) => retryDelay(i + 1, p));
}
