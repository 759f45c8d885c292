/**
 * What a caller remembers between calls: the last known owner pod of each
 * object (a hint only — the host it names redirects or refuses when it is
 * wrong, so a stale entry costs one extra hop, never a wrong answer), bounded
 * to the most recently used entries; and the backoff between retries of one
 * call. Shared by the router (calls in this namespace) and the remote caller
 * (sidecar/access/remote-call.ts, calls into another namespace).
 */

const MAX_ENTRIES = 10_000;

export class OwnerCache {
  private readonly owners = new Map<string, string>();

  get(key: string): string | undefined {
    return this.owners.get(key);
  }

  /** Remembers `pod` as the owner of `key`, as the most recently used entry. */
  remember(key: string, pod: string): void {
    this.owners.delete(key);
    this.owners.set(key, pod);
    if (this.owners.size > MAX_ENTRIES) {
      const oldest = this.owners.keys().next().value;
      if (oldest !== undefined) this.owners.delete(oldest);
    }
  }

  forget(key: string): void {
    this.owners.delete(key);
  }
}

/** The wait before the next retry of one call: 20 ms, doubling, at most 250 ms. */
export function nextBackoff(prev: number): number {
  return prev === 0 ? 20 : Math.min(250, prev * 2);
}
