/**
 * The compact in-memory index of one activated object's storage: every live
 * key with its version (stream sequence of the message that wrote it) and
 * its value's size — no values. Values are read on demand by version
 * (journal.ts) and recently used ones kept in a cache bounded by bytes
 * (value-cache.ts), so an object costs its keys, not its values.
 *
 * Layout: the keys in one array in UTF-8 byte order; versions and sizes in
 * typed arrays at the same positions. A key costs its string plus 8 bytes of
 * array slot and 12 of typed arrays (growth slack aside); lookups are binary
 * searches. It only ever reflects committed (durable) writes.
 *
 * Deleted keys whose tombstone this activation knows (loaded, or written by
 * it) keep the tombstone's sequence (`absentAt`): an absence check is then
 * enforced by JetStream as "the key's subject is still at that sequence"
 * (0 when no tombstone is known — never written, or expired).
 *
 * Building from an unordered load (`build`) sorts runs and merges them,
 * yielding to the event loop between slices, so a big object never holds the
 * loop (and with it the host's lease renewals) for long.
 */
import { compareKeys, lowerBound, selectRange, type ListRange } from './keys.ts';

/** What the index knows of a live key. */
export interface KeyMeta {
  /** Stream sequence of the message that wrote it. */
  version: number;
  /** Value bytes. */
  size: number;
}

/** A value as read (get, list). */
export interface Entry {
  value: Uint8Array;
  version: number;
}

/** Keys in any order with their metadata at the same positions (a load's result). */
export interface UnorderedKeys {
  keys: string[];
  versions: number[];
  sizes: number[];
}

/** Work units (comparisons or moves) between two yields to the event loop while building. */
const SLICE = 32_768;
const RUN = 4_096;

const pause = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Shared by every empty index (most active objects hold no keys): nothing is written to them, grow() replaces them first. */
const NO_VERSIONS = new Float64Array(0);
const NO_SIZES = new Uint32Array(0);

export class KeyIndex {
  private sorted: string[] = [];
  private versions = NO_VERSIONS;
  private sizes = NO_SIZES;
  private bytes = 0;
  /** Created with the first known tombstone. */
  private tombs: Map<string, number> | undefined;

  get size(): number {
    return this.sorted.length;
  }

  /** Sum of key (UTF-8) and value bytes. */
  get totalBytes(): number {
    return this.bytes;
  }

  private find(key: string): number {
    const i = lowerBound(this.sorted, key);
    return i < this.sorted.length && this.sorted[i] === key ? i : -1;
  }

  get(key: string): KeyMeta | undefined {
    const i = this.find(key);
    return i === -1 ? undefined : { version: this.versions[i]!, size: this.sizes[i]! };
  }

  /** For an absent key: the sequence of its tombstone if known, else 0 (what its subject's last sequence should be). */
  absentAt(key: string): number {
    return this.tombs?.get(key) ?? 0;
  }

  keys(): readonly string[] {
    return this.sorted;
  }

  private grow(need: number): void {
    if (need <= this.versions.length) return;
    const cap = Math.max(need, 8, Math.ceil(this.versions.length * 1.5));
    const v = new Float64Array(cap);
    v.set(this.versions.subarray(0, this.sorted.length));
    const s = new Uint32Array(cap);
    s.set(this.sizes.subarray(0, this.sorted.length));
    this.versions = v;
    this.sizes = s;
  }

  set(key: string, meta: KeyMeta): void {
    this.tombs?.delete(key);
    const i = lowerBound(this.sorted, key);
    if (i < this.sorted.length && this.sorted[i] === key) {
      this.bytes += meta.size - this.sizes[i]!;
    } else {
      const n = this.sorted.length;
      this.grow(n + 1);
      this.versions.copyWithin(i + 1, i, n);
      this.sizes.copyWithin(i + 1, i, n);
      this.sorted.splice(i, 0, key);
      this.bytes += Buffer.byteLength(key, 'utf8') + meta.size;
    }
    this.versions[i] = meta.version;
    this.sizes[i] = meta.size;
  }

  /** Deletes `key`; `tombstone` is the sequence of the delete's message, if it wrote one. */
  delete(key: string, tombstone?: number): boolean {
    if (tombstone !== undefined) (this.tombs ??= new Map()).set(key, tombstone);
    const i = this.find(key);
    if (i === -1) return false;
    const n = this.sorted.length;
    this.bytes -= Buffer.byteLength(key, 'utf8') + this.sizes[i]!;
    this.versions.copyWithin(i, i + 1, n);
    this.sizes.copyWithin(i, i + 1, n);
    this.sorted.splice(i, 1);
    return true;
  }

  /** Deletes many keys in one pass over the index (delete-all); `tombstones[i]` is the sequence of key i's delete. */
  deleteMany(keys: readonly string[], tombstones?: readonly number[]): void {
    if (tombstones !== undefined) {
      const tombs = (this.tombs ??= new Map());
      keys.forEach((k, i) => tombs.set(k, tombstones[i]!));
    }
    const gone = new Set(keys);
    let o = 0;
    for (let i = 0; i < this.sorted.length; i++) {
      const k = this.sorted[i]!;
      if (gone.has(k)) {
        this.bytes -= Buffer.byteLength(k, 'utf8') + this.sizes[i]!;
        continue;
      }
      this.sorted[o] = k;
      this.versions[o] = this.versions[i]!;
      this.sizes[o] = this.sizes[i]!;
      o++;
    }
    this.sorted.length = o;
  }

  /** Builds the index of keys in any order (each key once) and known tombstones, yielding to the event loop between slices. */
  static async build(u: UnorderedKeys, tombstones = new Map<string, number>()): Promise<KeyIndex> {
    const order = await sortedOrder(u.keys);
    const idx = new KeyIndex();
    if (tombstones.size > 0) idx.tombs = tombstones;
    const n = order.length;
    idx.grow(n);
    const sorted = new Array<string>(n);
    for (let j = 0; j < n; j++) {
      const i = order[j]!;
      const k = u.keys[i]!;
      sorted[j] = k;
      idx.versions[j] = u.versions[i]!;
      idx.sizes[j] = u.sizes[i]!;
      idx.bytes += Buffer.byteLength(k, 'utf8') + u.sizes[i]!;
      if (j % SLICE === SLICE - 1) await pause();
    }
    idx.sorted = sorted;
    return idx;
  }

  /** Synchronous build for small inputs and tests: `[key, meta]` pairs in any order. */
  static from(entries: Iterable<[string, KeyMeta]>): KeyIndex {
    const idx = new KeyIndex();
    for (const [k, m] of entries) idx.set(k, m);
    return idx;
  }

  /**
   * The keys of a list request with their metadata; when `maxValueBytes` is
   * given, the answer stops before the entry whose value would take the sum
   * past it (the first entry always fits) and says `truncated`.
   */
  list(r: ListRange, maxValueBytes = Number.POSITIVE_INFINITY): { entries: ({ key: string } & KeyMeta)[]; truncated: boolean } {
    const { keys, truncated } = selectRange(this.sorted, r);
    const entries: ({ key: string } & KeyMeta)[] = [];
    let bytes = 0;
    for (const key of keys) {
      const meta = this.get(key)!;
      if (entries.length > 0 && bytes + meta.size > maxValueBytes) return { entries, truncated: true };
      bytes += meta.size;
      entries.push({ key, ...meta });
    }
    return { entries, truncated };
  }
}

/**
 * Positions of `keys` in UTF-8 byte order: sorted runs of RUN keys, merged
 * pairwise, with a yield to the event loop every SLICE units of work.
 */
export async function sortedOrder(keys: readonly string[]): Promise<Uint32Array> {
  const n = keys.length;
  let a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  const cmp = (x: number, y: number) => compareKeys(keys[x]!, keys[y]!);
  for (let lo = 0; lo < n; lo += RUN) {
    a.subarray(lo, Math.min(n, lo + RUN)).sort(cmp);
    if ((lo / RUN) % 4 === 3) await pause();
  }
  if (n <= RUN) return a;
  let b = new Uint32Array(n);
  let work = 0;
  for (let width = RUN; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(n, lo + width);
      const hi = Math.min(n, lo + 2 * width);
      let i = lo;
      let j = mid;
      let o = lo;
      while (i < mid && j < hi) {
        b[o++] = cmp(a[i]!, a[j]!) <= 0 ? a[i++]! : a[j++]!;
        if (++work === SLICE) {
          work = 0;
          await pause();
        }
      }
      while (i < mid) b[o++] = a[i++]!;
      while (j < hi) b[o++] = a[j++]!;
    }
    [a, b] = [b, a];
  }
  return a;
}
