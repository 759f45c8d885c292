/**
 * The in-memory index of the message copies one queue host stores (pure: no
 * I/O, no clock). Memory per copy is what issue 13 item 6 bounds (≤ 200
 * bytes; bodies and attributes stay in JetStream), so there is no object,
 * string, closure or timer per copy:
 *
 * - a copy is a small integer slot into parallel typed arrays
 *   (struct-of-arrays): 16 bytes of binary message id, three Float64 times,
 *   receive count, reply size, the group, two flag bytes (≈ 70 bytes, plus
 *   the id hash table and slack of growth ≈ 90–110 bytes in all);
 * - message ids are UUIDs kept as 16 bytes and found through an
 *   open-addressing hash table of slots (Int32Array, load ≤ 0.75); an id that
 *   is not a UUID (never written by this code, accepted for safety) is kept in
 *   a side map;
 * - the (primary, primary session, replica list) of a copy is one interned
 *   group: a queue has a handful of them (replica sets × host sessions), and
 *   who holds a copy depends only on its group (takeover.ts), so holding is
 *   decided per group, not per copy;
 * - freed slots are reused (a free list), and the arrays grow by 1.5×; a
 *   start-up sizes them once from the host stream's message count.
 *
 * Slots are reused after a copy is removed: code that awaits between reading
 * a slot and writing it must look the copy up by id again (`slotOf`).
 */

/** Flags of a slot. */
export const LIVE = 1;
const ODD_ID = 2;
/** Being moved to the dead-letter queue. */
export const MOVING = 4;
/** The dead-letter queue refused it for good (delivered as usual). */
export const DL_REFUSED = 8;

/** Where a slot is queued for delivery (ready.ts): nowhere, in the ready list, in the due heap. */
export const NOT_QUEUED = 0;
export const IN_READY = 1;
export const IN_DUE = 2;

export interface CopyGroup {
  primary: string;
  /** The primary's session at enqueue (first holder, takeover.ts). */
  ps: string;
  replicas: string[];
}

export interface NewCopy {
  id: string;
  primary: string;
  ps: string;
  replicas: readonly string[];
  enqueuedAt: number;
  visibleAt: number;
  receiveCount: number;
  invisibleUntil: number;
  /** JSON bytes of body + attributes (an upper bound is fine: reply budget). */
  size: number;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function hexVal(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

/** Writes the 16 bytes of a lowercase UUID into `out` at `at`; false when `id` is not one. */
export function packId(id: string, out: Uint8Array, at: number): boolean {
  if (id.length !== 36 || !UUID.test(id)) return false;
  let j = 0;
  for (let i = 0; i < 16; i++) {
    if (j === 8 || j === 13 || j === 18 || j === 23) j++;
    out[at + i] = (hexVal(id.charCodeAt(j)) << 4) | hexVal(id.charCodeAt(j + 1));
    j += 2;
  }
  return true;
}

export function unpackId(b: Uint8Array, at: number): string {
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    s += HEX[b[at + i] as number] as string;
  }
  return s;
}

function hash16(b: Uint8Array, at: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i++) h = Math.imul(h ^ (b[at + i] as number), 0x01000193);
  return (h ^ (h >>> 15)) >>> 0;
}

const INITIAL = 1_024;

export class CopyIndex {
  private cap = 0;
  private top = 0;
  private count = 0;
  private ids = new Uint8Array(0);
  private gids = new Uint32Array(0);
  private enq = new Float64Array(0);
  private vis = new Float64Array(0);
  private inv = new Float64Array(0);
  private rc = new Uint32Array(0);
  private sizes = new Uint32Array(0);
  private flagBits = new Uint8Array(0);
  private queuedAt = new Uint8Array(0);
  private free: number[] = [];
  /** Open addressing: slot + 1 per entry, 0 = empty. */
  private table = new Int32Array(0);
  private readonly oddIds = new Map<number, string>();
  private readonly oddSlots = new Map<string, number>();
  private readonly scratch = new Uint8Array(16);
  private readonly groupList: CopyGroup[] = [];
  private readonly groupKeys = new Map<string, number>();
  private readonly strings = new Map<string, string>();
  private lastGroup = -1;

  constructor() {
    this.grow(INITIAL);
  }

  get size(): number {
    return this.count;
  }

  /** One past the highest slot ever used (iterate 0 … end − 1 and test `live`). */
  get end(): number {
    return this.top;
  }

  get groups(): readonly CopyGroup[] {
    return this.groupList;
  }

  /** Bytes held by the typed arrays (for the memory bench and logs). */
  get bytes(): number {
    return this.cap * (16 + 4 + 8 * 3 + 4 + 4 + 1 + 1) + this.table.byteLength;
  }

  /** Makes room for `n` copies in one allocation (a start-up that knows its count: no growth copies, no slack). */
  reserve(n: number): void {
    if (n > this.cap) this.resize(n);
  }

  /** Gives back what a reserve took beyond the copies there are (10% kept for growth). */
  trim(): void {
    const cap = Math.max(Math.ceil(this.top * 1.1), INITIAL);
    if (cap < this.cap * 0.8) this.resize(cap);
  }

  private grow(want: number): void {
    this.resize(Math.max(want, Math.ceil(this.cap * 1.5), INITIAL));
  }

  /** Reallocates every array for `cap` slots (≥ top). */
  private resize(cap: number): void {
    const ids = new Uint8Array(cap * 16);
    ids.set(this.ids.subarray(0, Math.min(this.ids.length, cap * 16)));
    this.ids = ids;
    const g = new Uint32Array(cap);
    g.set(this.gids.subarray(0, Math.min(this.gids.length, cap)));
    this.gids = g;
    const e = new Float64Array(cap);
    e.set(this.enq.subarray(0, Math.min(this.enq.length, cap)));
    this.enq = e;
    const v = new Float64Array(cap);
    v.set(this.vis.subarray(0, Math.min(this.vis.length, cap)));
    this.vis = v;
    const iv = new Float64Array(cap);
    iv.set(this.inv.subarray(0, Math.min(this.inv.length, cap)));
    this.inv = iv;
    const r = new Uint32Array(cap);
    r.set(this.rc.subarray(0, Math.min(this.rc.length, cap)));
    this.rc = r;
    const s = new Uint32Array(cap);
    s.set(this.sizes.subarray(0, Math.min(this.sizes.length, cap)));
    this.sizes = s;
    const f = new Uint8Array(cap);
    f.set(this.flagBits.subarray(0, Math.min(this.flagBits.length, cap)));
    this.flagBits = f;
    const q = new Uint8Array(cap);
    q.set(this.queuedAt.subarray(0, Math.min(this.queuedAt.length, cap)));
    this.queuedAt = q;
    this.cap = cap;
    let t = 1 << 10;
    while (t * 0.75 < cap) t <<= 1;
    if (t !== this.table.length) this.rehash(t);
    this.free = this.free.filter((slot) => slot < cap);
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    for (let s = 0; s < this.top; s++) if ((this.flagBits[s] as number) & LIVE && !((this.flagBits[s] as number) & ODD_ID)) this.insertHash(s);
  }

  private insertHash(slot: number): void {
    const mask = this.table.length - 1;
    let i = hash16(this.ids, slot * 16) & mask;
    while (this.table[i] !== 0) i = (i + 1) & mask;
    this.table[i] = slot + 1;
  }

  private sameId(slot: number, b: Uint8Array): boolean {
    const at = slot * 16;
    for (let i = 0; i < 16; i++) if (this.ids[at + i] !== b[i]) return false;
    return true;
  }

  /** Position in the hash table of the slot whose id is `b`, or −1. */
  private find(b: Uint8Array): number {
    const mask = this.table.length - 1;
    let i = hash16(b, 0) & mask;
    for (;;) {
      const e = this.table[i] as number;
      if (e === 0) return -1;
      if (this.sameId(e - 1, b)) return i;
      i = (i + 1) & mask;
    }
  }

  /** The slot of copy `id`, or −1. */
  slotOf(id: string): number {
    if (!packId(id, this.scratch, 0)) return this.oddSlots.get(id) ?? -1;
    const pos = this.find(this.scratch);
    return pos < 0 ? -1 : (this.table[pos] as number) - 1;
  }

  has(id: string): boolean {
    return this.slotOf(id) >= 0;
  }

  /** Adds a copy (the caller checked it is not here) and returns its slot. */
  add(c: NewCopy): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.top >= this.cap) this.grow(this.top + 1);
      slot = this.top++;
    }
    this.count++;
    let flags = LIVE;
    if (packId(c.id, this.ids, slot * 16)) this.insertHash(slot);
    else {
      flags |= ODD_ID;
      this.oddIds.set(slot, c.id);
      this.oddSlots.set(c.id, slot);
    }
    this.flagBits[slot] = flags;
    this.gids[slot] = this.group(c.primary, c.ps, c.replicas);
    this.enq[slot] = c.enqueuedAt;
    this.vis[slot] = c.visibleAt;
    this.rc[slot] = c.receiveCount;
    this.inv[slot] = c.invisibleUntil;
    this.sizes[slot] = Math.min(c.size, 0xffffffff);
    this.queuedAt[slot] = NOT_QUEUED;
    return slot;
  }

  /** Removes the copy in `slot` (its slot may be reused by the next add). */
  remove(slot: number): void {
    const flags = this.flagBits[slot] as number;
    if (!(flags & LIVE)) return;
    if (flags & ODD_ID) {
      const id = this.oddIds.get(slot);
      this.oddIds.delete(slot);
      if (id !== undefined) this.oddSlots.delete(id);
    } else {
      this.scratch.set(this.ids.subarray(slot * 16, slot * 16 + 16));
      let i = this.find(this.scratch);
      if (i >= 0) {
        // Backward-shift deletion keeps every probe chain unbroken.
        const mask = this.table.length - 1;
        let j = i;
        for (;;) {
          j = (j + 1) & mask;
          const e = this.table[j] as number;
          if (e === 0) break;
          const home = hash16(this.ids, (e - 1) * 16) & mask;
          // An entry whose home lies cyclically in (i, j] stays; any other moves into the hole.
          const stays = i <= j ? i < home && home <= j : i < home || home <= j;
          if (!stays) {
            this.table[i] = e;
            i = j;
          }
        }
        this.table[i] = 0;
      }
    }
    this.flagBits[slot] = 0;
    this.queuedAt[slot] = NOT_QUEUED;
    this.count--;
    this.free.push(slot);
  }

  live(slot: number): boolean {
    return ((this.flagBits[slot] as number) & LIVE) !== 0;
  }

  id(slot: number): string {
    return (this.flagBits[slot] as number) & ODD_ID ? (this.oddIds.get(slot) ?? '') : unpackId(this.ids, slot * 16);
  }

  gid(slot: number): number {
    return this.gids[slot] as number;
  }

  groupOf(slot: number): CopyGroup {
    return this.groupList[this.gids[slot] as number] as CopyGroup;
  }

  enqueuedAt(slot: number): number {
    return this.enq[slot] as number;
  }

  visibleAt(slot: number): number {
    return this.vis[slot] as number;
  }

  invisibleUntil(slot: number): number {
    return this.inv[slot] as number;
  }

  receiveCount(slot: number): number {
    return this.rc[slot] as number;
  }

  replySize(slot: number): number {
    return this.sizes[slot] as number;
  }

  flag(slot: number, f: number): boolean {
    return ((this.flagBits[slot] as number) & f) !== 0;
  }

  setFlag(slot: number, f: number, on: boolean): void {
    const v = this.flagBits[slot] as number;
    this.flagBits[slot] = on ? v | f : v & ~f;
  }

  queued(slot: number): number {
    return this.queuedAt[slot] as number;
  }

  setQueued(slot: number, q: number): void {
    this.queuedAt[slot] = q;
  }

  setReceive(slot: number, receiveCount: number, invisibleUntil: number): void {
    this.rc[slot] = receiveCount;
    this.inv[slot] = invisibleUntil;
  }

  setReplicas(slot: number, replicas: readonly string[]): void {
    const g = this.groupOf(slot);
    this.gids[slot] = this.group(g.primary, g.ps, replicas);
  }

  /** One string object per distinct pod name or session id. */
  private str(v: string): string {
    const have = this.strings.get(v);
    if (have !== undefined) return have;
    this.strings.set(v, v);
    return v;
  }

  /** The interned group of (primary, ps, replicas). */
  group(primary: string, ps: string, replicas: readonly string[]): number {
    // Consecutive copies (a start-up, a burst of sends) mostly share their group: no key string then.
    const last = this.groupList[this.lastGroup];
    if (last !== undefined && last.primary === primary && last.ps === ps && last.replicas.length === replicas.length && last.replicas.every((p, i) => p === replicas[i])) return this.lastGroup;
    const key = `${primary}\u0000${ps}\u0000${replicas.join('\u0000')}`;
    let g = this.groupKeys.get(key);
    if (g === undefined) {
      g = this.groupList.length;
      this.groupList.push({ primary: this.str(primary), ps: this.str(ps), replicas: replicas.map((p) => this.str(p)) });
      this.groupKeys.set(key, g);
    }
    this.lastGroup = g;
    return g;
  }
}
