/**
 * The in-memory index of one activated object's storage: every live key with
 * its value and version, kept in UTF-8 byte order so get and list are served
 * without a round trip. It only ever reflects committed (durable) writes.
 */
import { compareKeys, lowerBound, selectRange, type ListRange } from './keys.ts';

export interface Entry {
  value: Uint8Array;
  /** Stream sequence of the message that wrote it. */
  version: number;
}

export class KeyIndex {
  private readonly map = new Map<string, Entry>();
  private sorted: string[] = [];
  private bytes = 0;

  get size(): number {
    return this.map.size;
  }

  /** Sum of key and value bytes. */
  get totalBytes(): number {
    return this.bytes;
  }

  get(key: string): Entry | undefined {
    return this.map.get(key);
  }

  keys(): readonly string[] {
    return this.sorted;
  }

  set(key: string, entry: Entry): void {
    const prev = this.map.get(key);
    if (prev === undefined) {
      const i = lowerBound(this.sorted, key);
      this.sorted.splice(i, 0, key);
      this.bytes += Buffer.byteLength(key, 'utf8');
    } else {
      this.bytes -= prev.value.length;
    }
    this.bytes += entry.value.length;
    this.map.set(key, entry);
  }

  delete(key: string): boolean {
    const prev = this.map.get(key);
    if (prev === undefined) return false;
    this.map.delete(key);
    const i = lowerBound(this.sorted, key);
    if (this.sorted[i] === key) this.sorted.splice(i, 1);
    this.bytes -= prev.value.length + Buffer.byteLength(key, 'utf8');
    return true;
  }

  /** Bulk load (activation): entries in any order. */
  static from(entries: Iterable<[string, Entry]>): KeyIndex {
    const idx = new KeyIndex();
    for (const [k, e] of entries) {
      idx.map.set(k, e);
      idx.bytes += Buffer.byteLength(k, 'utf8') + e.value.length;
    }
    idx.sorted = [...idx.map.keys()].sort(compareKeys);
    return idx;
  }

  list(r: ListRange): { entries: { key: string; entry: Entry }[]; truncated: boolean } {
    const { keys, truncated } = selectRange(this.sorted, r);
    return { entries: keys.map((key) => ({ key, entry: this.map.get(key)! })), truncated };
  }
}
