/**
 * Pure logic of object listing: the byte-ordered map of the index view
 * (against a sort of the same ids, with ids that are awkward for NATS
 * subjects and for UTF-16 ordering), cursors and list queries, the summary
 * totals a commit carries, and URL parsing.
 */
import { describe, expect, it } from '@jest/globals';
import { CastellanError } from '../../common/errors.ts';
import { decodeSummary, encodeSummary, indexNames } from '../../sidecar/listing/layout.ts';
import { decodeCursor, encodeCursor, parsePageQuery } from '../../sidecar/listing/query.ts';
import { parseListingUrl } from '../../sidecar/listing/routes.ts';
import { fromByteKey, SortedMap, toByteKey } from '../../sidecar/listing/sorted-map.ts';
import { summarizer, totalsAfter } from '../../sidecar/listing/summary.ts';
import { classNames, encodeId } from '../../sidecar/objects/subjects.ts';
import { deleteMessage, putMessage } from '../../sidecar/storage/journal.ts';
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

  it('adds one summary message to a storage batch, matching the state after it', () => {
    const names = classNames('castellan', 'default', 'c');
    const encId = encodeId('x.y');
    const idx = KeyIndex.from([['k1', { size: 3, version: 1 }]]);
    const s = summarizer(names, () => 1234)(encId, idx, [putMessage(names, encId, 'k2', bytes('hello')), deleteMessage(names, encId, 'k1')]);
    expect(s?.subject).toBe(indexNames(names).subject(encId));
    expect(s?.subject).toBe(`castellan.obj.default.c.idx.${encId}`);
    expect(decodeSummary(s!.data, undefined)).toEqual({ keys: 1, bytes: 2 + 5, lastWrite: 1234 });
    // An alarm-only batch still carries the summary (the object is listed for its alarm).
    const alarm = summarizer(names, () => 5)(encId, idx, [{ subject: names.alarm(encId), data: bytes('{}'), headers: {} }]);
    expect(decodeSummary(alarm!.data, undefined)).toEqual({ keys: 1, bytes: 5, lastWrite: 5 });
    // Nothing to commit, or a batch that writes the entry itself: no summary.
    expect(summarizer(names)(encId, idx, [])).toBeUndefined();
    expect(summarizer(names)(encId, idx, [{ subject: s!.subject, data: new Uint8Array(0), headers: {} }])).toBeUndefined();
  });

  it('skips the summary of a batch that keeps the totals, for up to a second after writing them', () => {
    const names = classNames('castellan', 'default', 'c');
    const encId = encodeId('o');
    const idx = KeyIndex.from([['k', { size: 3, version: 1 }]]);
    let t = 1_000;
    const hook = summarizer(names, () => t);
    const same = [putMessage(names, encId, 'k', bytes('xyz'))];
    // Nothing remembered yet: written.
    expect(hook(encId, idx, same)).toBeDefined();
    // Same totals, 0.5 s later: skipped (the entry is right; lastWrite ages < 1 s).
    t += 500;
    expect(hook(encId, idx, same)).toBeUndefined();
    // Totals change: written at once.
    expect(decodeSummary(hook(encId, idx, [putMessage(names, encId, 'k', bytes('longer'))])!.data, undefined)).toEqual({ keys: 1, bytes: 7, lastWrite: 1_500 });
    // An alarm write always carries it.
    expect(hook(encId, idx, [{ subject: names.alarm(encId), data: bytes('{}'), headers: {} }])).toBeDefined();
    // Same totals after a second: written again.
    t += 1_000;
    expect(hook(encId, idx, same)).toBeDefined();
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
