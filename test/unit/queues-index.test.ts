/**
 * The compact copy index of a queue host (copies.ts) and its delivery order
 * (ready.ts): ids round-trip through 16 bytes, lookups survive removals and
 * growth (checked against a Map under random operations), groups are
 * interned, the ready list is FIFO with push-front, the due heap pops in
 * time order; and the index stays within its memory budget per copy.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { CopyIndex, IN_READY, LIVE, packId, unpackId, type NewCopy } from '../../sidecar/queues/copies.ts';
import { DueHeap, SlotDeque } from '../../sidecar/queues/ready.ts';

function copy(id: string, over: Partial<NewCopy> = {}): NewCopy {
  return { id, primary: 'q-0', ps: 's0', replicas: ['q-0', 'q-1'], enqueuedAt: 1_000, visibleAt: 1_000, receiveCount: 0, invisibleUntil: 0, size: 100, ...over };
}

describe('copy ids', () => {
  it('round-trips a UUID through 16 bytes and refuses anything else', () => {
    const b = new Uint8Array(32);
    for (let i = 0; i < 100; i++) {
      const id = randomUUID();
      expect(packId(id, b, 16)).toBe(true);
      expect(unpackId(b, 16)).toBe(id);
    }
    expect(packId('not-a-uuid', b, 0)).toBe(false);
    expect(packId('0B6B1C56-3D0F-4A56-9D4E-2F8A7F1B9E01', b, 0)).toBe(false);
  });
});

describe('CopyIndex', () => {
  it('finds, updates and removes copies like a Map under random operations (growth, slot reuse, odd ids)', () => {
    const idx = new CopyIndex();
    const ref = new Map<string, number>();
    const ids: string[] = [];
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    for (let op = 0; op < 30_000; op++) {
      if (ids.length === 0 || rnd() < 0.6) {
        const id = rnd() < 0.01 ? `odd-${op}` : randomUUID();
        const slot = idx.add(copy(id, { enqueuedAt: op, receiveCount: op % 7 }));
        ids.push(id);
        ref.set(id, op);
        expect(idx.slotOf(id)).toBe(slot);
      } else {
        const i = Math.floor(rnd() * ids.length);
        const id = ids[i] as string;
        ids[i] = ids[ids.length - 1] as string;
        ids.pop();
        const slot = idx.slotOf(id);
        expect(slot).toBeGreaterThanOrEqual(0);
        idx.remove(slot);
        ref.delete(id);
        expect(idx.slotOf(id)).toBe(-1);
      }
    }
    expect(idx.size).toBe(ref.size);
    for (const [id, op] of ref) {
      const slot = idx.slotOf(id);
      expect(idx.live(slot)).toBe(true);
      expect(idx.id(slot)).toBe(id);
      expect(idx.enqueuedAt(slot)).toBe(op);
      expect(idx.receiveCount(slot)).toBe(op % 7);
    }
    let live = 0;
    for (let s = 0; s < idx.end; s++) if (idx.live(s)) live++;
    expect(live).toBe(ref.size);
    expect(idx.slotOf(randomUUID())).toBe(-1);
  });

  it('interns groups: copies with the same primary, session and replica list share one', () => {
    const idx = new CopyIndex();
    const a = idx.add(copy(randomUUID()));
    const b = idx.add(copy(randomUUID()));
    const c = idx.add(copy(randomUUID(), { replicas: ['q-0', 'q-2'] }));
    expect(idx.gid(a)).toBe(idx.gid(b));
    expect(idx.gid(c)).not.toBe(idx.gid(a));
    expect(idx.groupOf(a).replicas).toBe(idx.groupOf(b).replicas);
    idx.setReplicas(a, ['q-0', 'q-2']);
    expect(idx.gid(a)).toBe(idx.gid(c));
    expect(idx.groupOf(a)).toEqual({ primary: 'q-0', ps: 's0', replicas: ['q-0', 'q-2'] });
    expect(idx.groups).toHaveLength(2);
  });

  it('keeps receive state, flags and queue position per slot, and clears them on removal', () => {
    const idx = new CopyIndex();
    const s = idx.add(copy(randomUUID()));
    idx.setReceive(s, 3, 5_000);
    idx.setQueued(s, IN_READY);
    idx.setFlag(s, 4, true);
    expect([idx.receiveCount(s), idx.invisibleUntil(s), idx.queued(s), idx.flag(s, 4), idx.flag(s, LIVE)]).toEqual([3, 5_000, IN_READY, true, true]);
    idx.remove(s);
    expect([idx.live(s), idx.queued(s), idx.size]).toEqual([false, 0, 0]);
  });

  it('reserves once for a known count and trims back to what is used, keeping every copy', () => {
    const idx = new CopyIndex();
    idx.reserve(50_000);
    const reserved = idx.bytes;
    const ids = Array.from({ length: 3_000 }, () => randomUUID());
    ids.forEach((id, i) => idx.add(copy(id, { enqueuedAt: i })));
    idx.trim();
    expect(idx.bytes).toBeLessThan(reserved / 5);
    ids.forEach((id, i) => expect(idx.enqueuedAt(idx.slotOf(id))).toBe(i));
    for (let i = 0; i < 2_000; i++) idx.add(copy(randomUUID()));
    ids.forEach((id) => expect(idx.id(idx.slotOf(id))).toBe(id));
    expect(idx.size).toBe(5_000);
  });

  it('uses at most 200 bytes of typed arrays per copy at 100,000 copies', () => {
    const idx = new CopyIndex();
    for (let i = 0; i < 100_000; i++) idx.add(copy(randomUUID()));
    expect(idx.bytes / idx.size).toBeLessThanOrEqual(200);
  });
});

describe('SlotDeque and DueHeap', () => {
  it('deque: FIFO across growth, with push-front', () => {
    const d = new SlotDeque();
    for (let i = 0; i < 3_000; i++) d.push(i);
    d.unshift(-5);
    expect(d.shift()).toBe(-5);
    for (let i = 0; i < 3_000; i++) expect(d.shift()).toBe(i);
    expect(d.shift()).toBe(-1);
    expect(d.length).toBe(0);
  });

  it('heap: pops in time order', () => {
    const h = new DueHeap();
    const times = Array.from({ length: 2_000 }, (_, i) => (i * 7_919) % 2_003);
    times.forEach((t, i) => h.push(t, i));
    const out = { slot: 0, time: 0 };
    let prev = -Infinity;
    let n = 0;
    while (h.pop(out)) {
      expect(out.time).toBeGreaterThanOrEqual(prev);
      expect(times[out.slot]).toBe(out.time);
      prev = out.time;
      n++;
    }
    expect(n).toBe(2_000);
    expect(h.peekTime()).toBe(Infinity);
  });
});
