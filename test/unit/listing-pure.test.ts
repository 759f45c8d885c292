/**
 * Pure logic of object listing: the byte-ordered map of the index view
 * (against a sort of the same ids, with ids that are awkward for NATS
 * subjects and for UTF-16 ordering), cursors and list queries, the summary
 * totals a commit carries, and URL parsing.
 */
import { describe, expect, it } from '@jest/globals';
import { CastellanError } from '../../common/errors.ts';
import { decodeSummary, decodeTotals, encodeSummary, indexNames, OP_HEADER, resolveSummary, TOTALS_HEADER, type Summary } from '../../sidecar/listing/layout.ts';
import { decodeCursor, encodeCursor, parsePageQuery } from '../../sidecar/listing/query.ts';
import { parseListingUrl } from '../../sidecar/listing/routes.ts';
import { fromByteKey, SortedMap, toByteKey } from '../../sidecar/listing/sorted-map.ts';
import { entryAfter, entryFound, HOT_MS, objectIndexHook, planSummary, SETTLE_MAX_MS, SETTLE_QUIET_MS, settleDue, totalsAfter, type EntryState } from '../../sidecar/listing/summary.ts';
import { classNames, encodeId } from '../../sidecar/objects/subjects.ts';
import { deleteMessage, putMessage, type OutMessage } from '../../sidecar/storage/journal.ts';
import { KeyIndex } from '../../sidecar/storage/key-index.ts';
import { compareKeys } from '../../sidecar/storage/keys.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof CastellanError ? `${err.status} ${err.code}` : String(err);
  }
};

const awkward = ['a.b', 'a*', 'a>', 'a b', ' lead', 'é', 'ÿ', '\uFF5E', '\u{1F600}', 'a', 'ab', 'a\u0000', 'Z', '-', '_', '0', '~', '中文', 'a/b', '%41'];

/** A deterministic pseudo-random generator (xorshift). */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomId(r: () => number): string {
  const alphabet = ['a', 'b', 'z', '.', '*', '>', ' ', 'é', '\uFF5E', '\u{1F600}', '0', '9', '_', '-', '中'];
  const n = 1 + Math.floor(r() * 6);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)]!;
  return s;
}

describe('SortedMap', () => {
  it('keeps ids in UTF-8 byte order through inserts, updates and deletes (20,000 ops)', () => {
    const r = rng(42);
    const m = new SortedMap<number>();
    const ref = new Map<string, number>();
    for (const id of awkward) {
      m.set(toByteKey(id), 1);
      ref.set(id, 1);
    }
    for (let i = 0; i < 20_000; i++) {
      const id = r() < 0.5 ? `${randomId(r)}${i % 3 === 0 ? String(i) : ''}` : randomId(r);
      if (r() < 0.25) {
        expect(m.delete(toByteKey(id))).toBe(ref.delete(id));
      } else {
        m.set(toByteKey(id), i);
        ref.set(id, i);
      }
    }
    const expected = [...ref.keys()].sort(compareKeys);
    const got = [...m.entriesFrom()].map(([k]) => fromByteKey(k));
    expect(got).toEqual(expected);
    expect(m.size).toBe(ref.size);
    for (const id of expected.slice(0, 500)) expect(m.get(toByteKey(id))).toBe(ref.get(id));
  });

  it('seeks after a key or from a key, including keys not present', () => {
    const m = new SortedMap<string>();
    const ids = Array.from({ length: 3_000 }, (_, i) => `id-${String(i).padStart(5, '0')}`);
    for (const id of [...ids].reverse()) m.set(toByteKey(id), id);
    const from = (b: { after?: string; from?: string }, n: number) => {
      const out: string[] = [];
      for (const [k] of m.entriesFrom(b)) {
        if (out.length === n) break;
        out.push(fromByteKey(k));
      }
      return out;
    };
    expect(from({ after: toByteKey('id-01023') }, 3)).toEqual(['id-01024', 'id-01025', 'id-01026']);
    expect(from({ from: toByteKey('id-01023') }, 2)).toEqual(['id-01023', 'id-01024']);
    expect(from({ after: toByteKey('id-01023x') }, 1)).toEqual(['id-01024']);
    expect(from({ after: toByteKey('id-02999') }, 1)).toEqual([]);
    expect(from({ from: toByteKey('a') }, 1)).toEqual(['id-00000']);
    // Paging by "after the last one" visits every id exactly once.
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = from(after === undefined ? {} : { after: toByteKey(after) }, 97);
      if (page.length === 0) break;
      seen.push(...page);
      after = page[page.length - 1];
    }
    expect(seen).toEqual(ids);
  });

  it('orders awkward ids by their UTF-8 bytes, unlike JavaScript string order', () => {
    const m = new SortedMap<null>();
    for (const id of awkward) m.set(toByteKey(id), null);
    const got = [...m.entriesFrom()].map(([k]) => fromByteKey(k));
    expect(got).toEqual([...awkward].sort(compareKeys));
    expect(got.indexOf('\uFF5E')).toBeLessThan(got.indexOf('\u{1F600}'));
  });
});

describe('cursors and queries', () => {
  it('round-trips every awkward id through a cursor', () => {
    for (const id of awkward) expect(decodeCursor(encodeCursor(id), 1024)).toBe(id);
  });

  it('refuses what is not a cursor with 400 INVALID_CURSOR', () => {
    for (const bad of ['!!', 'a', 'YQ==', 'a b', '____', '/w']) expect(code(() => decodeCursor(bad, 1024))).toBe('400 INVALID_CURSOR');
    expect(code(() => decodeCursor(encodeCursor('x'.repeat(2000)), 1024))).toBe('400 INVALID_CURSOR');
  });

  it('parses limit 1–1000, default 100, and refuses the rest with 400 INVALID_LIMIT', () => {
    const q = (s: string) => parsePageQuery(new URLSearchParams(s), 1024);
    expect(q('')).toEqual({ prefix: '', limit: 100 });
    expect(q('limit=1').limit).toBe(1);
    expect(q('limit=1000').limit).toBe(1000);
    expect(q(`prefix=a.b&after=${encodeCursor('a.b1')}`)).toEqual({ prefix: 'a.b', after: 'a.b1', limit: 100 });
    for (const bad of ['limit=0', 'limit=1001', 'limit=-1', 'limit=1.5', 'limit=abc', 'limit=', 'limit=99999999']) expect(code(() => q(bad))).toBe('400 INVALID_LIMIT');
    expect(code(() => q('after=***'))).toBe('400 INVALID_CURSOR');
    expect(code(() => q('limit=1&limit=2'))).toBe('400 BAD_REQUEST');
    expect(code(() => q('what=1'))).toBe('400 BAD_REQUEST');
  });
});

describe('summaries', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  it('computes totals after a batch in order (puts, overwrites, deletes, re-puts)', () => {
    const committed = new Map<string, number>([['a', 3], ['é', 10]]);
    const before = { keys: 2, bytes: 1 + 3 + 2 + 10 };
    const t = totalsAfter(before, (k) => committed.get(k), [
      { key: 'a', del: false, size: 5 },
      { key: 'b', del: false, size: 1 },
      { key: 'é', del: true, size: 0 },
      { key: 'b', del: true, size: 0 },
      { key: 'b', del: false, size: 7 },
      { key: 'zz', del: true, size: 0 },
    ]);
    expect(t).toEqual({ keys: 2, bytes: 1 + 5 + 1 + 7 });
  });

  it('adds one summary message to a cold object\'s batch, matching the state after it', () => {
    const names = classNames('castellan', 'default', 'c');
    const encId = encodeId('x.y');
    const hook = objectIndexHook(names);
    const idx = KeyIndex.from([['k1', { size: 3, version: 1 }]]);
    const r = hook.prepare(encId, undefined, idx, [putMessage(names, encId, 'k2', bytes('hello')), deleteMessage(names, encId, 'k1')], false, 1234);
    const s = r.msgs[2]!;
    expect(r.msgs).toHaveLength(3);
    expect(s.subject).toBe(indexNames(names).subject(encId));
    expect(s.subject).toBe(`castellan.obj.default.c.idx.${encId}`);
    expect(decodeSummary(s.data, undefined)).toEqual({ keys: 1, bytes: 2 + 5, lastWrite: 1234 });
    // An alarm-only batch carries the summary (the object is listed for its alarm).
    const alarm = hook.prepare(encId, undefined, idx, [{ subject: names.alarm(encId), data: bytes('{}'), headers: {} }], false, 5);
    expect(decodeSummary(alarm.msgs[1]!.data, undefined)).toEqual({ keys: 1, bytes: 5, lastWrite: 5 });
    // Nothing to commit: nothing; a batch that writes the entry itself: nothing added, and the entry is no longer known.
    expect(hook.prepare(encId, undefined, idx, [], false, 1).msgs).toEqual([]);
    const own = hook.prepare(encId, { keys: 1, bytes: 5, at: 0, pending: false }, idx, [{ subject: s.subject, data: new Uint8Array(0), headers: {} }], false, 1);
    expect(own.msgs).toHaveLength(1);
    expect(entryAfter(own.plan, { keys: 1, bytes: 5, at: 0, pending: false }, 1)).toBeUndefined();
  });

  it('plans: skip equal totals for a second, go pending when hot, ride totals on the last put, settle', () => {
    const t = (keys: number, bytes: number) => ({ keys, bytes });
    const keysOnly = { onlyKeys: true, endsWithPut: true, settle: false };
    const settled: EntryState = { keys: 1, bytes: 10, at: 1_000, pending: false };
    // Equal totals within LAST_WRITE_PRECISION_MS: nothing.
    expect(planSummary(settled, t(1, 10), t(1, 10), keysOnly, 1_500).kind).toBe('none');
    // Changed totals within HOT_MS of the last summary: a pending summary in the batch.
    expect(planSummary(settled, t(1, 10), t(1, 12), keysOnly, 1_000 + HOT_MS - 1)).toEqual({ kind: 'batch', summary: { keys: 1, bytes: 12, lastWrite: 1_999, pending: true } });
    // Cold: a settled summary.
    expect(planSummary(settled, t(1, 10), t(1, 12), keysOnly, 1_000 + HOT_MS)).toEqual({ kind: 'batch', summary: { keys: 1, bytes: 12, lastWrite: 2_000 } });
    expect(planSummary(undefined, t(1, 10), t(1, 12), keysOnly, 1_001).kind).toBe('batch');
    const pending: EntryState = { keys: 1, bytes: 12, at: 1_500, pending: true, pendingSince: 1_500 };
    // Pending: the totals ride on the last put…
    expect(planSummary(pending, t(1, 12), t(2, 20), keysOnly, 1_600)).toEqual({ kind: 'totals', summary: { keys: 2, bytes: 20, lastWrite: 1_600 } });
    // …unless the batch ends with a tombstone (it expires), has an alarm, or changes whether the object has keys.
    expect(planSummary(pending, t(1, 12), t(2, 20), { ...keysOnly, endsWithPut: false }, 1_600)).toMatchObject({ kind: 'batch', summary: { pending: true } });
    expect(planSummary(pending, t(1, 12), t(1, 12), { ...keysOnly, onlyKeys: false }, 1_600)).toMatchObject({ kind: 'batch', summary: { pending: true } });
    expect(planSummary(pending, t(1, 12), t(0, 0), keysOnly, 1_600)).toMatchObject({ kind: 'batch', summary: { keys: 0 } });
    expect(planSummary({ ...settled, keys: 0, bytes: 0 }, t(0, 0), t(1, 3), keysOnly, 1_100)).toMatchObject({ kind: 'batch', summary: { keys: 1 } });
    // Settle: a settled summary; nothing when not pending.
    expect(planSummary(pending, t(2, 20), t(2, 20), { onlyKeys: true, endsWithPut: false, settle: true }, 5_000)).toEqual({ kind: 'batch', summary: { keys: 2, bytes: 20, lastWrite: 5_000 } });
    // A settle names the last write, not its own time.
    expect(planSummary(pending, t(2, 20), t(2, 20), { onlyKeys: true, endsWithPut: false, settle: true, lastWrite: 4_000 }, 5_000)).toEqual({ kind: 'batch', summary: { keys: 2, bytes: 20, lastWrite: 4_000 } });
    expect(planSummary(settled, t(1, 10), t(1, 10), { onlyKeys: true, endsWithPut: false, settle: true }, 5_000).kind).toBe('none');
    // A settle by an activation that does not know the entry (found missing, pending or wrong): settled.
    expect(planSummary(undefined, t(3, 30), t(3, 30), { onlyKeys: true, endsWithPut: false, settle: true }, 5_000)).toEqual({ kind: 'batch', summary: { keys: 3, bytes: 30, lastWrite: 5_000 } });
    // What an activation takes for known of the entry it found.
    expect(entryFound({ keys: 3, bytes: 30, lastWrite: 7 }, t(3, 30))).toEqual({ keys: 3, bytes: 30, at: 7, pending: false });
    expect(entryFound(undefined, t(3, 30))).toBeUndefined();
    expect(entryFound({ keys: 3, bytes: 30, lastWrite: 7, pending: true }, t(3, 30))).toBeUndefined();
    expect(entryFound({ keys: 3, bytes: 31, lastWrite: 7 }, t(3, 30))).toBeUndefined();
    // Knowledge after the commit, and when a settle is due.
    const afterTotals = entryAfter({ kind: 'totals', summary: { keys: 2, bytes: 20, lastWrite: 1_600 } }, pending, 1_600)!;
    expect(afterTotals).toEqual({ keys: 2, bytes: 20, at: 1_500, pending: true, pendingSince: 1_500 });
    expect(settleDue(afterTotals, 1_600, 1_600 + SETTLE_QUIET_MS - 1)).toBe(false);
    expect(settleDue(afterTotals, 1_600, 1_600 + SETTLE_QUIET_MS)).toBe(true);
    expect(settleDue(afterTotals, 1_500 + SETTLE_MAX_MS - 10, 1_500 + SETTLE_MAX_MS)).toBe(true);
    expect(settleDue(settled, 0, 1e9)).toBe(false);
  });

  it('resolves a pending entry from the newest key message, a settled one as it is', () => {
    const e: Summary = { keys: 1, bytes: 5, lastWrite: 10, pending: true };
    const later = { keys: 3, bytes: 50, lastWrite: 20 };
    expect(resolveSummary(e, 100, { seq: 120, totals: later })).toEqual(later);
    expect(resolveSummary(e, 100, { seq: 90, totals: later })).toEqual({ keys: 1, bytes: 5, lastWrite: 10 });
    expect(resolveSummary(e, 100, undefined)).toEqual({ keys: 1, bytes: 5, lastWrite: 10 });
    expect(resolveSummary({ keys: 1, bytes: 5, lastWrite: 10 }, 100, { seq: 120, totals: later })).toEqual({ keys: 1, bytes: 5, lastWrite: 10 });
    expect(decodeTotals('3 50 20')).toEqual(later);
    expect(decodeTotals('3 x 20')).toBeUndefined();
    expect(decodeTotals(undefined)).toBeUndefined();
    expect(decodeSummary(encodeSummary(e), undefined)).toEqual(e);
  });

  it('keeps every entry resolving to the exact totals through 20,000 random batches, settles, owner deaths, failures and expiring tombstones', () => {
    const names = classNames('castellan', 'default', 'c');
    const encId = encodeId('model');
    const hook = objectIndexHook(names);
    const entrySubject = indexNames(names).subject(encId);
    const r = rng(42);
    /** The stream: the last message of each subject. */
    const stream = new Map<string, { seq: number; msg: OutMessage }>();
    let seq = 0;
    /** The object's storage: key → value size. */
    const model = new Map<string, number>();
    let entry: EntryState | undefined;
    let lastCommitAt = 0;
    let now = 1_000_000;
    const counts = { batch: 0, totals: 0, none: 0, settles: 0, deaths: 0 };
    const check = () => {
      const e = stream.get(entrySubject);
      const keys = model.size;
      const bytes = [...model].reduce((n, [k, v]) => n + Buffer.byteLength(k) + v, 0);
      if (e === undefined) {
        expect(keys).toBe(0);
        return;
      }
      const s = decodeSummary(e.msg.data, e.msg.headers[OP_HEADER])!;
      // Whether the object has keys is never pending.
      expect(s.keys === 0).toBe(keys === 0);
      let newest: { seq: number; totals: Summary | undefined } | undefined;
      for (const [subject, m] of stream) if (subject.startsWith(names.kvAll(encId).slice(0, -1)) && (newest === undefined || m.seq > newest.seq)) newest = { seq: m.seq, totals: decodeTotals(m.msg.headers[TOTALS_HEADER]) };
      const got = resolveSummary(s, e.seq, newest);
      expect({ keys: got.keys, bytes: got.bytes }).toEqual({ keys, bytes });
    };
    for (let step = 0; step < 20_000; step++) {
      now += Math.floor(r() < 0.8 ? r() * 300 : r() * 4_000);
      const roll = r();
      if (roll < 0.03) {
        // The owner dies (or its activation ends): a new one knows nothing of the entry.
        entry = undefined;
        counts.deaths++;
        continue;
      }
      if (roll < 0.06) {
        // A tombstone expires.
        const tomb = [...stream].find(([, m]) => m.msg.headers['Castellan-Op'] === 'del' && m.msg.subject !== entrySubject);
        if (tomb !== undefined) stream.delete(tomb[0]);
        continue;
      }
      const idx = KeyIndex.from([...model].map(([k, size], i) => [k, { size, version: i + 1 }] as const));
      let msgs: OutMessage[] = [];
      let settle = false;
      if (roll < 0.12) {
        if (!settleDue(entry, lastCommitAt, now)) continue;
        settle = true;
        counts.settles++;
      } else {
        const overlay = new Map(model);
        const n = 1 + Math.floor(r() * 3);
        for (let i = 0; i < n; i++) {
          const key = `k${Math.floor(r() * 6)}`;
          if (overlay.has(key) && r() < 0.35) {
            overlay.delete(key);
            msgs.push(deleteMessage(names, encId, key));
          } else {
            const size = [5, 10, 20][Math.floor(r() * 3)]!;
            overlay.set(key, size);
            msgs.push(putMessage(names, encId, key, new Uint8Array(size)));
          }
        }
        if (r() < 0.05) msgs.push({ subject: names.alarm(encId), data: bytes('{}'), headers: {} });
      }
      const prepared = hook.prepare(encId, entry, idx, msgs, settle ? { lastWrite: lastCommitAt } : false, now);
      counts[prepared.plan.kind === 'own' ? 'none' : prepared.plan.kind]++;
      if (r() < 0.03) {
        // The commit fails (not applied): the activation forgets what it knew.
        entry = undefined;
        check();
        continue;
      }
      msgs = prepared.msgs;
      for (const m of msgs) {
        seq++;
        stream.set(m.subject, { seq, msg: m });
        const k = m.headers['Castellan-Key'];
        if (k === undefined) continue;
        const key = Buffer.from(k, 'base64url').toString('utf8');
        if (m.headers['Castellan-Op'] === 'del') model.delete(key);
        else model.set(key, m.data.length);
      }
      entry = entryAfter(prepared.plan, entry, now);
      if (msgs.length > 0) lastCommitAt = now;
      check();
    }
    // Every kind of plan was exercised, and most batches rode free.
    expect(counts.totals).toBeGreaterThan(counts.batch);
    expect(Math.min(counts.batch, counts.totals, counts.none, counts.settles, counts.deaths)).toBeGreaterThan(50);
  });

  it('reads summaries back and treats tombstones as absent', () => {
    expect(decodeSummary(encodeSummary({ keys: 3, bytes: 9, lastWrite: 7 }), undefined)).toEqual({ keys: 3, bytes: 9, lastWrite: 7 });
    expect(decodeSummary(new Uint8Array(0), 'del')).toBeUndefined();
    expect(decodeSummary(bytes('{"k":1}'), undefined)).toBeUndefined();
    expect(decodeSummary(bytes('nope'), undefined)).toBeUndefined();
  });
});

describe('listing URLs', () => {
  it('parses the listing, object and inspection paths, decoding the id once', () => {
    expect(parseListingUrl('/v1/classes/counter/objects?limit=5')).toMatchObject({ kind: 'list', cls: 'counter' });
    expect(parseListingUrl('/v1/classes/counter/objects/')).toMatchObject({ kind: 'list', cls: 'counter' });
    expect(parseListingUrl(`/v1/classes/counter/objects/${encodeURIComponent('a.b*> é/%')}`)).toMatchObject({ kind: 'object', id: 'a.b*> é/%' });
    expect(parseListingUrl('/v1/classes/counter/objects/x/keys?prefix=a')).toMatchObject({ kind: 'keys', id: 'x' });
    expect(code(() => parseListingUrl('/v1/classes/counter'))).toBe('404 ROUTE_NOT_FOUND');
    expect(code(() => parseListingUrl('/v1/classes/counter/objects/x/nope'))).toBe('404 ROUTE_NOT_FOUND');
    expect(code(() => parseListingUrl('/v1/classes/counter/objects/%E0%A4%A'))).toBe('400 INVALID_ID');
  });
});
