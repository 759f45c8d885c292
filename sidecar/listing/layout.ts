/**
 * Where the object index lives in JetStream, and what its messages say.
 *
 * One subject per object in the class stream, next to its storage:
 *   <prefix>.obj.<ns>.<class>.idx.<encId>
 * (encId as in sidecar/objects/subjects.ts). The stream keeps one message per
 * subject, so the index of a class is the set of its `idx.*` subjects. The
 * payload is the object's summary as JSON `{"k":keys,"b":bytes,"w":lastWriteMs}`;
 * a removed entry is a tombstone (`Castellan-Op: del`, empty, expiring after 1 h).
 *
 * The summary is written by the object's owner in the same atomic, fenced
 * batch as the storage or alarm write it describes (summary.ts), so the index
 * and the data cannot disagree whatever dies when.
 */
import type { ClassNames } from '../objects/subjects.ts';

export const SUMMARY_HEADER = 'Castellan-Summary';
export const OP_HEADER = 'Castellan-Op';
/** On a storage put: `<keys> <bytes> <lastWriteMs>` of the object after its batch (pending entries). */
export const TOTALS_HEADER = 'Castellan-Totals';
export const TOMBSTONE_TTL = '1h';

export interface IndexNames {
  /** The summary subject of one object. */
  subject(encId: string): string;
  /** Filter matching every summary subject of the class. */
  all: string;
  /** `…idx.`: strip it from a subject to get the encId. */
  prefix: string;
}

export function indexNames(names: ClassNames): IndexNames {
  // names.all is `<base>.>`
  const base = names.all.slice(0, -2);
  return { subject: (encId) => `${base}.idx.${encId}`, all: `${base}.idx.*`, prefix: `${base}.idx.` };
}

/** What the index says about one object. */
export interface Summary {
  /** Live storage keys. */
  keys: number;
  /** Bytes of those keys and values (UTF-8 key bytes + value bytes). */
  bytes: number;
  /** When the owner committed the last write (storage or alarm), epoch ms. */
  lastWrite: number;
  /** Later storage batches may carry the totals instead (see the header); absent = false. */
  pending?: boolean;
}

export function encodeSummary(s: Summary): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s.pending === true ? { k: s.keys, b: s.bytes, w: s.lastWrite, p: 1 } : { k: s.keys, b: s.bytes, w: s.lastWrite }));
}

export function encodeTotals(s: Summary): string {
  return `${s.keys} ${s.bytes} ${s.lastWrite}`;
}

/** The totals a storage put carries, or undefined when it carries none (or they are unreadable). */
export function decodeTotals(header: string | undefined): Summary | undefined {
  if (header === undefined || header === '') return undefined;
  const parts = header.split(' ');
  if (parts.length !== 3) return undefined;
  const [k, b, w] = parts.map(Number) as [number, number, number];
  if (!Number.isSafeInteger(k) || !Number.isSafeInteger(b) || !Number.isSafeInteger(w)) return undefined;
  return { keys: k, bytes: b, lastWrite: w };
}

/**
 * What an index entry says once resolved: a settled entry as it is; a pending
 * one (sequence `entrySeq`) with the totals of the object's newest key
 * message when that message is newer and carries them.
 */
export function resolveSummary(entry: Summary, entrySeq: number, newestKey: { seq: number; totals: Summary | undefined } | undefined): Summary {
  if (entry.pending !== true || newestKey === undefined || newestKey.seq < entrySeq || newestKey.totals === undefined) return { keys: entry.keys, bytes: entry.bytes, lastWrite: entry.lastWrite };
  return newestKey.totals;
}

/** The summary in a message, or undefined for a tombstone or anything unreadable. */
export function decodeSummary(data: Uint8Array, op: string | undefined): Summary | undefined {
  if (op === 'del' || data.length === 0) return undefined;
  try {
    const v = JSON.parse(new TextDecoder().decode(data)) as { k?: unknown; b?: unknown; w?: unknown; p?: unknown };
    if (typeof v.k !== 'number' || typeof v.b !== 'number' || typeof v.w !== 'number') return undefined;
    return v.p === 1 ? { keys: v.k, bytes: v.b, lastWrite: v.w, pending: true } : { keys: v.k, bytes: v.b, lastWrite: v.w };
  } catch {
    return undefined;
  }
}
