/**
 * Recently read or written storage values of this host's objects, bounded by
 * bytes (least recently used out first). An entry is keyed by object and key
 * and carries the version it is the value of; a lookup names the version the
 * object's index has (key-index.ts) and hits only on that exact version, so
 * the cache can never answer with a value the index does not name — a stale
 * entry is just a miss. Pure (no I/O).
 */

interface Cached {
  version: number;
  value: Uint8Array;
  /** Bytes charged: the value plus its cache key. */
  cost: number;
}

/** Charged per entry beside the value (map slot, record, key string). */
const ENTRY_OVERHEAD = 96;

export class ValueCache {
  private readonly map = new Map<string, Cached>();
  private bytes = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Bytes held. */
  get size(): number {
    return this.bytes;
  }

  get entries(): number {
    return this.map.size;
  }

  private static id(encId: string, key: string): string {
    return `${encId}\u0000${key}`;
  }

  /** The value of `key` at exactly `version`, if held (and then most recently used). */
  get(encId: string, key: string, version: number): Uint8Array | undefined {
    const id = ValueCache.id(encId, key);
    const c = this.map.get(id);
    if (c === undefined || c.version !== version) return undefined;
    this.map.delete(id);
    this.map.set(id, c);
    return c.value;
  }

  /**
   * Holds `value` as the value of `key` at `version`. A value that is a view
   * into a bigger buffer (a network read) is copied, so the cache never keeps
   * more bytes alive than it counts. Values above an eighth of the budget are
   * not held.
   */
  put(encId: string, key: string, version: number, value: Uint8Array): void {
    const id = ValueCache.id(encId, key);
    this.drop(encId, key);
    const cost = value.length + id.length * 2 + ENTRY_OVERHEAD;
    if (cost > this.maxBytes / 8) return;
    const own = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : value.slice();
    this.map.set(id, { version, value: own, cost });
    this.bytes += cost;
    while (this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.bytes -= this.map.get(oldest.value)!.cost;
      this.map.delete(oldest.value);
    }
  }

  drop(encId: string, key: string): void {
    const id = ValueCache.id(encId, key);
    const c = this.map.get(id);
    if (c === undefined) return;
    this.bytes -= c.cost;
    this.map.delete(id);
  }
}
