/**
 * An ordered map from object ids to values, in UTF-8 byte order of the ids,
 * for the in-memory view of a class's index (view.ts). Pure.
 *
 * Ids are kept as "byte strings": the id's UTF-8 bytes, one char per byte
 * (latin1). JavaScript compares strings by UTF-16 code units, which for such
 * strings is exactly byte order (it is not for ordinary strings: a character
 * above U+FFFF sorts before U+E000–U+FFFF in UTF-16 but after them in UTF-8).
 *
 * Storage: sorted chunks of at most CHUNK entries (a flat B-tree of one
 * level), so an insert moves at most CHUNK entries and a lookup or a seek is
 * two binary searches: O(log n) for a million ids, no full re-sort ever.
 */
const CHUNK = 512;

interface Chunk<V> {
  keys: string[];
  vals: V[];
}

export function toByteKey(id: string): string {
  return Buffer.from(id, 'utf8').toString('latin1');
}

export function fromByteKey(key: string): string {
  return Buffer.from(key, 'latin1').toString('utf8');
}

export class SortedMap<V> {
  private chunks: Chunk<V>[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Index of the first chunk whose last key is ≥ key (chunks.length if none). */
  private chunkFor(key: string): number {
    let lo = 0;
    let hi = this.chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.chunks[mid]!;
      if (c.keys[c.keys.length - 1]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private static lowerBound(keys: readonly string[], key: string): number {
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get(key: string): V | undefined {
    const ci = this.chunkFor(key);
    const c = this.chunks[ci];
    if (c === undefined) return undefined;
    const i = SortedMap.lowerBound(c.keys, key);
    return c.keys[i] === key ? c.vals[i] : undefined;
  }

  set(key: string, val: V): void {
    let ci = this.chunkFor(key);
    if (ci === this.chunks.length) {
      // Beyond every key: append to the last chunk (or start one).
      if (ci === 0 || this.chunks[ci - 1]!.keys.length >= CHUNK) {
        this.chunks.push({ keys: [key], vals: [val] });
        this.count++;
        return;
      }
      ci -= 1;
    }
    const c = this.chunks[ci]!;
    const i = SortedMap.lowerBound(c.keys, key);
    if (c.keys[i] === key) {
      c.vals[i] = val;
      return;
    }
    c.keys.splice(i, 0, key);
    c.vals.splice(i, 0, val);
    this.count++;
    if (c.keys.length > 2 * CHUNK) {
      const half = c.keys.length >>> 1;
      this.chunks.splice(ci + 1, 0, { keys: c.keys.splice(half), vals: c.vals.splice(half) });
    }
  }

  delete(key: string): boolean {
    const ci = this.chunkFor(key);
    const c = this.chunks[ci];
    if (c === undefined) return false;
    const i = SortedMap.lowerBound(c.keys, key);
    if (c.keys[i] !== key) return false;
    c.keys.splice(i, 1);
    c.vals.splice(i, 1);
    this.count--;
    if (c.keys.length === 0) this.chunks.splice(ci, 1);
    return true;
  }

  /** Entries in order starting at the first key > `after` (or ≥ `from`). */
  *entriesFrom(bound: { after?: string; from?: string } = {}): Generator<[string, V]> {
    let ci = 0;
    let i = 0;
    const lower = bound.after ?? bound.from;
    if (lower !== undefined) {
      ci = this.chunkFor(lower);
      const c = this.chunks[ci];
      if (c === undefined) return;
      i = SortedMap.lowerBound(c.keys, lower);
      if (bound.after !== undefined && c.keys[i] === bound.after) i++;
    }
    for (; ci < this.chunks.length; ci++, i = 0) {
      const c = this.chunks[ci]!;
      for (; i < c.keys.length; i++) yield [c.keys[i]!, c.vals[i]!];
    }
  }
}
