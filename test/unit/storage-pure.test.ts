/**
 * Pure logic of object storage and alarms: key validation and UTF-8 byte
 * ordering, list range selection, the key index, transaction validation and
 * planning, URL/query/alarm parsing, and the alarm retry schedule.
 */
import { describe, expect, it } from '@jest/globals';
import { CastellanError } from '../../common/errors.ts';
import { afterFailure, DEFAULT_ALARM_RETRY, retryDelay, retrySchedule } from '../../sidecar/alarms/backoff.ts';
import { KeyIndex, sortedOrder } from '../../sidecar/storage/key-index.ts';
import { ValueCache } from '../../sidecar/storage/value-cache.ts';
import { compareKeys, MAX_KEY_BYTES, MAX_VALUE_BYTES, selectRange, validateKey, validateValue, type ListRange } from '../../sidecar/storage/keys.ts';
import { keyToken } from '../../sidecar/storage/journal.ts';
import { parseAlarm, parseListQuery, parseStorageUrl } from '../../sidecar/storage/routes.ts';
import { evaluateChecks, parseTransaction, reduceOps, type Pending } from '../../sidecar/storage/transaction.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof CastellanError ? `${err.status} ${err.code}` : String(err);
  }
};

describe('keys', () => {
  it('orders by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FF5E is EF BD 9E in UTF-8, U+1F600 is F0 9F 98 80; in UTF-16 the emoji (D83D…) sorts first.
    expect(compareKeys('\uFF5E', '\u{1F600}')).toBeLessThan(0);
    expect('\uFF5E' < '\u{1F600}').toBe(false);
    expect(['p/2', 'p/10', 'p/1', 'é', 'z', 'a'].sort(compareKeys)).toEqual(['a', 'p/1', 'p/10', 'p/2', 'z', 'é']);
    expect(compareKeys('ab', 'ab')).toBe(0);
    expect(compareKeys('a', 'ab')).toBeLessThan(0);
  });

  it('validates keys and values against the limits', () => {
    expect(validateKey('k'.repeat(MAX_KEY_BYTES))).toHaveLength(MAX_KEY_BYTES);
    expect(code(() => validateKey('k'.repeat(MAX_KEY_BYTES + 1)))).toBe('413 PAYLOAD_TOO_LARGE');
    expect(code(() => validateKey('é'.repeat(1025)))).toBe('413 PAYLOAD_TOO_LARGE');
    expect(code(() => validateKey(''))).toBe('400 INVALID_KEY');
    expect(code(() => validateKey('\uD800x'))).toBe('400 INVALID_KEY');
    expect(validateValue(new Uint8Array(MAX_VALUE_BYTES)).length).toBe(MAX_VALUE_BYTES);
    expect(code(() => validateValue(new Uint8Array(MAX_VALUE_BYTES + 1)))).toBe('413 PAYLOAD_TOO_LARGE');
  });

  it('maps keys to short subject-safe tokens', () => {
    for (const k of ['a', 'a.b', '*', '>', 'with space', 'k'.repeat(2048), '日本']) expect(keyToken(k)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(keyToken('a')).not.toBe(keyToken('b'));
  });
});

describe('list range selection', () => {
  const sorted = ['a', 'p/1', 'p/10', 'p/2', 'q', 'z', 'é', '\uFF5E', '\u{1F600}'].sort(compareKeys);
  const sel = (r: Partial<ListRange>) => selectRange(sorted, { limit: 1000, reverse: false, ...r });

  it('applies prefix, start, startAfter and exclusive end', () => {
    expect(sel({ prefix: 'p/' }).keys).toEqual(['p/1', 'p/10', 'p/2']);
    expect(sel({ start: 'p/10', end: 'q' }).keys).toEqual(['p/10', 'p/2']);
    expect(sel({ startAfter: 'p/10' }).keys).toEqual(['p/2', 'q', 'z', 'é', '\uFF5E', '\u{1F600}']);
    expect(sel({ start: 'b', end: 'b' }).keys).toEqual([]);
    expect(sel({ prefix: 'p/', start: 'p/2' }).keys).toEqual(['p/2']);
    expect(sel({ prefix: 'zz' }).keys).toEqual([]);
  });

  it('limits with truncated, forward and reverse', () => {
    expect(sel({ limit: 2 })).toEqual({ keys: ['a', 'p/1'], truncated: true });
    expect(sel({ limit: 9 })).toEqual({ keys: sorted, truncated: false });
    expect(sel({ reverse: true, limit: 2 })).toEqual({ keys: ['\u{1F600}', '\uFF5E'], truncated: true });
    expect(sel({ reverse: true, prefix: 'p/', limit: 3 })).toEqual({ keys: ['p/2', 'p/10', 'p/1'], truncated: false });
    expect(sel({ reverse: true, end: 'q', limit: 2 })).toEqual({ keys: ['p/2', 'p/10'], truncated: true });
  });

  it('agrees with a brute-force filter on random keys and ranges', () => {
    const alphabet = ['a', 'b', '/', 'é', '\u{1F600}', '\uFF5E', '1', '10'];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const word = () => Array.from({ length: 1 + rnd(4) }, () => alphabet[rnd(alphabet.length)]).join('');
    for (let round = 0; round < 300; round++) {
      const keys = [...new Set(Array.from({ length: rnd(30) }, word))].sort(compareKeys);
      const r: ListRange = { limit: 1 + rnd(10), reverse: rnd(2) === 1 };
      if (rnd(3) === 0) r.prefix = word().slice(0, 2);
      if (rnd(3) === 0) r.start = word();
      if (rnd(3) === 0) r.startAfter = word();
      if (rnd(3) === 0) r.end = word();
      const all = keys.filter(
        (k) =>
          (r.prefix === undefined || k.startsWith(r.prefix)) &&
          (r.start === undefined || compareKeys(k, r.start) >= 0) &&
          (r.startAfter === undefined || compareKeys(k, r.startAfter) > 0) &&
          (r.end === undefined || compareKeys(k, r.end) < 0),
      );
      const ordered = r.reverse ? [...all].reverse() : all;
      expect(selectRange(keys, r)).toEqual({ keys: ordered.slice(0, r.limit), truncated: ordered.length > r.limit });
    }
  });
});

describe('key index', () => {
  it('keeps keys sorted, versions, sizes and byte totals through sets and deletes', () => {
    const idx = KeyIndex.from([['b', { size: 3, version: 2 }]]);
    idx.set('a', { size: 1, version: 3 });
    idx.set('é', { size: 2, version: 4 });
    idx.set('b', { size: 5, version: 5 });
    expect(idx.keys()).toEqual(['a', 'b', 'é']);
    expect(idx.totalBytes).toBe(1 + 1 + 1 + 5 + 2 + 2);
    expect(idx.get('b')).toEqual({ version: 5, size: 5 });
    expect(idx.delete('b')).toBe(true);
    expect(idx.delete('b')).toBe(false);
    expect(idx.keys()).toEqual(['a', 'é']);
    expect(idx.get('é')).toEqual({ version: 4, size: 2 });
    expect(idx.get('b')).toBeUndefined();
    expect(idx.list({ limit: 1, reverse: true })).toEqual({ entries: [{ key: 'é', version: 4, size: 2 }], truncated: true });
    idx.deleteMany(['a', 'zz']);
    expect(idx.keys()).toEqual(['é']);
    expect(idx.totalBytes).toBe(2 + 2);
  });

  it('remembers tombstone sequences of deleted keys until they are written again', () => {
    const idx = KeyIndex.from([['a', { size: 1, version: 1 }]]);
    expect(idx.absentAt('never')).toBe(0);
    idx.delete('a', 7);
    expect(idx.get('a')).toBeUndefined();
    expect(idx.absentAt('a')).toBe(7);
    idx.set('a', { size: 1, version: 9 });
    expect(idx.absentAt('a')).toBe(0);
    idx.deleteMany(['a', 'b'], [11, 12]);
    expect([idx.absentAt('a'), idx.absentAt('b')]).toEqual([11, 12]);
  });

  it('truncates a list before the value bytes limit, always returning the first entry', () => {
    const idx = KeyIndex.from([
      ['a', { size: 10, version: 1 }],
      ['b', { size: 10, version: 2 }],
      ['c', { size: 10, version: 3 }],
    ]);
    expect(idx.list({ limit: 10, reverse: false }, 25)).toEqual({ entries: [{ key: 'a', version: 1, size: 10 }, { key: 'b', version: 2, size: 10 }], truncated: true });
    expect(idx.list({ limit: 10, reverse: false }, 5).entries.map((e) => e.key)).toEqual(['a']);
    expect(idx.list({ limit: 10, reverse: false }, 30)).toMatchObject({ truncated: false });
  });

  it('builds from an unordered load equal to one built key by key (many sorted runs merged)', async () => {
    let seed = 11;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = ['a', 'b', 'é', '\u{1F600}', '\uFF5E', '/', '0'];
    const keys = [...new Set(Array.from({ length: 20_000 }, () => Array.from({ length: 1 + rnd(8) }, () => alphabet[rnd(alphabet.length)]).join('')))];
    const versions = keys.map((_, i) => i + 1);
    const sizes = keys.map((k) => k.length * 3);
    const idx = await KeyIndex.build({ keys, versions, sizes });
    const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(idx.keys()).toEqual(expected);
    expect(idx.size).toBe(keys.length);
    for (let i = 0; i < keys.length; i += 997) expect(idx.get(keys[i]!)).toEqual({ version: versions[i], size: sizes[i] });
    expect(idx.totalBytes).toBe(keys.reduce((n, k, i) => n + Buffer.byteLength(k) + sizes[i]!, 0));
    expect(await sortedOrder([])).toEqual(new Uint32Array(0));
  });

  it('compares like UTF-8 bytes on random strings with surrogate pairs and high BMP characters', () => {
    const units = ['a', 'z', '\u00E9', '\uD7FF', '\uE000', '\uFFFD', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
    let seed = 3;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 3000; i++) {
      const a = Array.from({ length: rnd(4) }, () => units[rnd(units.length)]).join('');
      const b = Array.from({ length: rnd(4) }, () => units[rnd(units.length)]).join('');
      expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });
});

describe('value cache', () => {
  it('hits only the exact version and evicts least recently used by bytes', () => {
    const c = new ValueCache(4096);
    const v = (n: number, fill: number) => new Uint8Array(n).fill(fill);
    c.put('o', 'a', 1, v(300, 1));
    expect(c.get('o', 'a', 1)?.[0]).toBe(1);
    expect(c.get('o', 'a', 2)).toBeUndefined();
    expect(c.get('p', 'a', 1)).toBeUndefined();
    c.put('o', 'b', 1, v(300, 2));
    c.put('o', 'c', 1, v(300, 3));
    expect(c.get('o', 'a', 1)).toBeDefined(); // a is now the most recently used
    for (let i = 0; i < 10; i++) c.put('o', `f${i}`, 1, v(300, 9));
    expect(c.size).toBeLessThanOrEqual(4096);
    expect(c.get('o', 'b', 1)).toBeUndefined();
    // Too big for the budget (over an eighth): not held.
    c.put('o', 'big', 1, v(1000, 7));
    expect(c.get('o', 'big', 1)).toBeUndefined();
    // A new version replaces, a drop forgets.
    c.put('o', 'x', 1, v(10, 1));
    c.put('o', 'x', 2, v(10, 2));
    expect(c.get('o', 'x', 1)).toBeUndefined();
    expect(c.get('o', 'x', 2)?.[0]).toBe(2);
    c.drop('o', 'x');
    expect(c.get('o', 'x', 2)).toBeUndefined();
  });

  it('copies a value that is a view into a bigger buffer', () => {
    const c = new ValueCache(1 << 20);
    const big = new Uint8Array(10_000);
    c.put('o', 'k', 1, big.subarray(10, 20));
    expect(c.get('o', 'k', 1)!.buffer.byteLength).toBe(10);
  });
});

describe('transactions', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('parses checks and ops, decoding values', () => {
    const w = parseTransaction({ checks: [{ key: 'a', version: 3 }, { key: 'b', absent: true }], ops: [{ op: 'put', key: 'a', value: b64('hi') }, { op: 'delete', key: 'b' }] });
    expect(w.checks).toEqual([{ key: 'a', version: 3 }, { key: 'b', absent: true }]);
    expect(w.ops[0]).toEqual({ op: 'put', key: 'a', value: Buffer.from('hi') });
    expect(w.ops[1]).toEqual({ op: 'delete', key: 'b' });
    expect(parseTransaction({ ops: [] })).toEqual({ checks: [], ops: [] });
  });

  it('rejects bad input with 400/413', () => {
    expect(code(() => parseTransaction({ ops: Array.from({ length: 129 }, () => ({ op: 'delete', key: 'x' })) }))).toBe('400 TOO_MANY_OPS');
    expect(code(() => parseTransaction({ ops: Array.from({ length: 128 }, () => ({ op: 'delete', key: 'x' })) }))).toBeUndefined();
    expect(code(() => parseTransaction({}))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [{ op: 'put', key: 'a' }] }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [{ op: 'put', key: 'a', value: '!!' }] }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [], checks: [{ key: 'a' }] }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [], checks: [{ key: 'a', absent: false }] }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [], extra: 1 }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseTransaction({ ops: [{ op: 'delete', key: 'k'.repeat(2049) }] }))).toBe('413 PAYLOAD_TOO_LARGE');
    expect(code(() => parseTransaction({ ops: [{ op: 'delete', key: '' }] }))).toBe('400 INVALID_KEY');
  });

  it('evaluates checks against committed state overlaid with earlier writes of the batch', () => {
    const state = new Map([['a', { version: 5 }]]);
    const lookup = (k: string) => state.get(k);
    const none: Pending = new Map();
    expect(evaluateChecks([{ key: 'a', version: 5 }, { key: 'b', absent: true }], lookup, none)).toEqual({ ok: true });
    expect(evaluateChecks([{ key: 'a', version: 4 }], lookup, none).ok).toBe(false);
    expect(evaluateChecks([{ key: 'a', absent: true }], lookup, none).ok).toBe(false);
    expect(evaluateChecks([{ key: 'b', version: 1 }], lookup, none).ok).toBe(false);
    expect(evaluateChecks([{ key: 'a', exists: true }], lookup, none).ok).toBe(true);
    expect(evaluateChecks([{ key: 'b', exists: true }], lookup, none).ok).toBe(false);
    const pending: Pending = new Map([['a', 'delete'], ['b', 'put']]);
    expect(evaluateChecks([{ key: 'a', absent: true }], lookup, pending).ok).toBe(true);
    expect(evaluateChecks([{ key: 'b', absent: true }], lookup, pending).ok).toBe(false);
    expect(evaluateChecks([{ key: 'b', version: 1 }], lookup, pending).ok).toBe(false);
  });

  it('reduces ops to the last op per key', () => {
    const pending: Pending = new Map();
    const v = Buffer.from('1');
    const out = reduceOps([{ op: 'put', key: 'a', value: v }, { op: 'put', key: 'b', value: v }, { op: 'delete', key: 'a' }], pending);
    expect(out).toEqual([{ op: 'put', key: 'b', value: v }, { op: 'delete', key: 'a' }]);
    expect(pending).toEqual(new Map([['b', 'put'], ['a', 'delete']]));
  });
});

describe('storage URLs and bodies', () => {
  it('parses every route, decoding id and key once', () => {
    expect(parseStorageUrl('/v1/storage/c/o%2F1/keys/p%2F1')).toEqual({ cls: 'c', id: 'o/1', kind: 'key', key: 'p/1' });
    expect(parseStorageUrl('/v1/storage/c/o/keys/p/1')).toEqual({ cls: 'c', id: 'o', kind: 'key', key: 'p/1' });
    expect(parseStorageUrl('/v1/storage/c/o/keys/%F0%9F%98%80')).toMatchObject({ key: '\u{1F600}' });
    expect(parseStorageUrl('/v1/storage/c/o/keys?prefix=a')).toMatchObject({ kind: 'keys' });
    expect(parseStorageUrl('/v1/storage/c/o')).toEqual({ cls: 'c', id: 'o', kind: 'object' });
    expect(parseStorageUrl('/v1/storage/c/o/transaction')).toMatchObject({ kind: 'transaction' });
    expect(parseStorageUrl('/v1/storage/c/o/alarm')).toMatchObject({ kind: 'alarm' });
    expect(code(() => parseStorageUrl('/v1/storage/c/o/other'))).toBe('404 ROUTE_NOT_FOUND');
    expect(code(() => parseStorageUrl('/v1/storage/c'))).toBe('400 INVALID_ID');
    expect(code(() => parseStorageUrl('/v1/storage/c/o/keys/%E0%A4%A'))).toBe('400 INVALID_KEY');
  });

  it('parses list queries', () => {
    expect(parseListQuery(new URLSearchParams('prefix=p%2F&limit=2&reverse=true'))).toEqual({ prefix: 'p/', limit: 2, reverse: true });
    expect(parseListQuery(new URLSearchParams(''))).toEqual({ limit: 1000, reverse: false });
    expect(code(() => parseListQuery(new URLSearchParams('limit=0')))).toBe('400 BAD_REQUEST');
    expect(code(() => parseListQuery(new URLSearchParams('limit=x')))).toBe('400 BAD_REQUEST');
    expect(code(() => parseListQuery(new URLSearchParams('bogus=1')))).toBe('400 BAD_REQUEST');
    expect(code(() => parseListQuery(new URLSearchParams('limit=1&limit=2')))).toBe('400 BAD_REQUEST');
  });

  it('parses alarm times as RFC 3339 or epoch ms', () => {
    expect(parseAlarm({ at: 1700000000000 })).toEqual({ at: 1700000000000, dueMs: 1700000000000 });
    expect(parseAlarm({ at: '2026-01-01T00:00:00Z' })).toEqual({ at: '2026-01-01T00:00:00Z', dueMs: Date.UTC(2026, 0, 1) });
    expect(parseAlarm({ at: '2026-01-01T01:00:00.5+01:00' }).dueMs).toBe(Date.UTC(2026, 0, 1) + 500);
    expect(code(() => parseAlarm({ at: 'tomorrow' }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseAlarm({ at: '2026-01-01' }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseAlarm({ at: -1 }))).toBe('400 BAD_REQUEST');
    expect(code(() => parseAlarm({}))).toBe('400 BAD_REQUEST');
  });
});

describe('alarm retry backoff', () => {
  it('doubles from 2 s for at least 6 retries, then gives up', () => {
    expect(retrySchedule(DEFAULT_ALARM_RETRY).slice(0, 6)).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 64_000]);
    expect(DEFAULT_ALARM_RETRY.maxRetries).toBeGreaterThanOrEqual(6);
    expect(afterFailure(0, DEFAULT_ALARM_RETRY)).toEqual({ retry: true, delayMs: 2_000 });
    expect(afterFailure(DEFAULT_ALARM_RETRY.maxRetries - 1, DEFAULT_ALARM_RETRY)).toMatchObject({ retry: true });
    expect(afterFailure(DEFAULT_ALARM_RETRY.maxRetries, DEFAULT_ALARM_RETRY)).toEqual({ retry: false });
    expect(retryDelay(40, { baseMs: 2_000, maxDelayMs: 60_000, maxRetries: 50 })).toBe(60_000);
    expect(retryDelay(0, DEFAULT_ALARM_RETRY)).toBe(0);
  });
});
