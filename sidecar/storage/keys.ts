/**
 * Storage keys and values, pure: validation against the SPEC limits, UTF-8
 * byte ordering, and the list range selection of
 * `GET /v1/storage/{class}/{id}/keys?prefix=&start=&startAfter=&end=&limit=&reverse=`.
 */
import { type CastellanError, Errors } from '../../common/errors.ts';

export const MAX_KEY_BYTES = 2048;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const MAX_TX_OPS = 128;
export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIST_LIMIT = 10_000;
/** Value bytes one list answer carries at most (it is truncated before the entry that would pass it; the first entry always fits). */
export const MAX_LIST_VALUE_BYTES = 16 * 1024 * 1024;

export function invalidKey(message: string): CastellanError {
  return Errors.badRequest(message, 'INVALID_KEY');
}

/** A key is 1–2048 bytes of well-formed UTF-8 (413 beyond the size limit). */
export function validateKey(key: string): string {
  if (key.length === 0) throw invalidKey('Storage key must not be empty.');
  if (/\p{Cs}/u.test(key)) throw invalidKey('Storage key is not valid Unicode.');
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw Errors.payloadTooLarge(`Storage key is ${bytes} bytes; the limit is ${MAX_KEY_BYTES}.`);
  return key;
}

export function validateValue(value: Uint8Array, key?: string): Uint8Array {
  if (value.length > MAX_VALUE_BYTES) {
    throw Errors.payloadTooLarge(`Value${key === undefined ? '' : ` of key "${key.slice(0, 64)}"`} is ${value.length} bytes; the limit is ${MAX_VALUE_BYTES}.`);
  }
  return value;
}

/**
 * Compares two keys by their UTF-8 bytes (not UTF-16 code units), without
 * encoding them: UTF-8 byte order is code point order, which differs from
 * UTF-16 code unit order only where a surrogate (U+D800–DFFF, half of a code
 * point above U+FFFF) meets a unit in U+E000–FFFF; the first differing units
 * are remapped so that surrogates sort above those. Keys are well-formed
 * (validateKey), so surrogates come in pairs.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

export interface ListRange {
  prefix?: string;
  /** Inclusive lower bound. */
  start?: string;
  /** Exclusive lower bound. */
  startAfter?: string;
  /** Exclusive upper bound. */
  end?: string;
  limit: number;
  reverse: boolean;
}

/**
 * Selects the keys of a list request from `sorted` (UTF-8 byte order):
 * those with `prefix`, ≥ start, > startAfter, < end; the first `limit` of them
 * in ascending order, or the last `limit` in descending order with `reverse`.
 * `truncated` says more keys matched than were returned.
 */
export function selectRange(sorted: readonly string[], r: ListRange): { keys: string[]; truncated: boolean } {
  const matches = (k: string) =>
    (r.prefix === undefined || k.startsWith(r.prefix)) &&
    (r.start === undefined || compareKeys(k, r.start) >= 0) &&
    (r.startAfter === undefined || compareKeys(k, r.startAfter) > 0) &&
    (r.end === undefined || compareKeys(k, r.end) < 0);
  // Binary search for the first key not below every lower bound, then walk.
  let lo = 0;
  const lowers = [r.prefix, r.start].filter((x): x is string => x !== undefined);
  if (lowers.length > 0) {
    const lower = lowers.reduce((a, b) => (compareKeys(a, b) >= 0 ? a : b));
    lo = lowerBound(sorted, lower);
  }
  const keys: string[] = [];
  if (!r.reverse) {
    for (let i = lo; i < sorted.length; i++) {
      const k = sorted[i]!;
      if (r.end !== undefined && compareKeys(k, r.end) >= 0) break;
      if (r.prefix !== undefined && !k.startsWith(r.prefix) && compareKeys(k, r.prefix) > 0) break;
      if (!matches(k)) continue;
      if (keys.length === r.limit) return { keys, truncated: true };
      keys.push(k);
    }
    return { keys, truncated: false };
  }
  let hi = sorted.length;
  if (r.end !== undefined) hi = lowerBound(sorted, r.end);
  for (let i = hi - 1; i >= lo; i--) {
    const k = sorted[i]!;
    if (!matches(k)) continue;
    if (keys.length === r.limit) return { keys, truncated: true };
    keys.push(k);
  }
  return { keys, truncated: false };
}

/** Index of the first key ≥ `key` in `sorted`. */
export function lowerBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(sorted[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
