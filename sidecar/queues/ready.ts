/**
 * The delivery order of a queue host's copies (pure: no I/O, no clock): a
 * ready list of slots that are visible now, and a heap of slots that become
 * visible at a time (delay, visibility timeout). A receive takes from the
 * front of the ready list instead of scanning the index, and a background
 * pass moves due slots from the heap to the ready list, so the work per
 * receive does not grow with the backlog.
 *
 * Both hold plain slot numbers in typed arrays (4 bytes per ready entry, 12
 * per heap entry). Entries are not removed when a copy is deleted or changes
 * state: the host checks an entry when it takes it (copies.ts `queued`, the
 * due time), and drops the ones that no longer hold. So an entry may be
 * stale, never missing: whoever changes a copy's state queues it again.
 */

/** A growable ring buffer of slots (FIFO, with push-front for returns). */
export class SlotDeque {
  private buf = new Int32Array(1_024);
  private head = 0;
  private len = 0;

  get length(): number {
    return this.len;
  }

  private grow(): void {
    const next = new Int32Array(this.buf.length * 2);
    for (let i = 0; i < this.len; i++) next[i] = this.buf[(this.head + i) & (this.buf.length - 1)] as number;
    this.buf = next;
    this.head = 0;
  }

  push(slot: number): void {
    if (this.len === this.buf.length) this.grow();
    this.buf[(this.head + this.len) & (this.buf.length - 1)] = slot;
    this.len++;
  }

  /** Puts `slot` back in front (a taken slot that did not fit a reply). */
  unshift(slot: number): void {
    if (this.len === this.buf.length) this.grow();
    this.head = (this.head - 1) & (this.buf.length - 1);
    this.buf[this.head] = slot;
    this.len++;
  }

  /** The front slot, or −1 when empty. */
  shift(): number {
    if (this.len === 0) return -1;
    const s = this.buf[this.head] as number;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.len--;
    if (this.len === 0) this.head = 0;
    return s;
  }

  clear(): void {
    this.head = 0;
    this.len = 0;
    if (this.buf.length > 1_024) this.buf = new Int32Array(1_024);
  }
}

/** A binary min-heap of (time, slot). */
export class DueHeap {
  private times = new Float64Array(256);
  private slots = new Int32Array(256);
  private len = 0;

  get length(): number {
    return this.len;
  }

  push(time: number, slot: number): void {
    if (this.len === this.times.length) {
      const t = new Float64Array(this.len * 2);
      t.set(this.times);
      this.times = t;
      const s = new Int32Array(this.len * 2);
      s.set(this.slots);
      this.slots = s;
    }
    let i = this.len++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((this.times[p] as number) <= time) break;
      this.times[i] = this.times[p] as number;
      this.slots[i] = this.slots[p] as number;
      i = p;
    }
    this.times[i] = time;
    this.slots[i] = slot;
  }

  /** Time of the earliest entry (Infinity when empty). */
  peekTime(): number {
    return this.len === 0 ? Infinity : (this.times[0] as number);
  }

  /** Removes the earliest entry; returns its slot and time (in `out`), or false when empty. */
  pop(out: { slot: number; time: number }): boolean {
    if (this.len === 0) return false;
    out.slot = this.slots[0] as number;
    out.time = this.times[0] as number;
    const n = --this.len;
    if (n > 0) {
      const t = this.times[n] as number;
      const s = this.slots[n] as number;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && (this.times[r] as number) < (this.times[l] as number) ? r : l;
        if ((this.times[c] as number) >= t) break;
        this.times[i] = this.times[c] as number;
        this.slots[i] = this.slots[c] as number;
        i = c;
      }
      this.times[i] = t;
      this.slots[i] = s;
    }
    return true;
  }

  clear(): void {
    this.len = 0;
  }
}
