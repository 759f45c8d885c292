/**
 * The write-path side of the object index: for each storage or alarm batch
 * of an object, what its index entry needs (layout.ts), decided by pure
 * functions of the activation's own knowledge of the entry and `now`.
 *
 * Why this is correct. Totals are computed from the committed state the owner
 * holds in memory (equal to what is durable, object-state.ts) plus the
 * batch's own changes in order (totalsAfter). A summary that rides in a batch
 * lands exactly when the data lands (the batch is atomic and fenced on the
 * owner record, sidecar/storage/journal.ts). The activation only trusts its
 * knowledge of the entry (EntryState) after an acknowledged commit; after a
 * failure it knows nothing, and the next batch carries a settled summary.
 *
 * Plans, first match wins:
 * - settle (the object's settle timer, or the check after activation found
 *   the entry missing, pending or wrong): a settled summary;
 * - alarm writes, and batches that make the object empty or give an empty one
 *   keys: a summary in the batch (the listing's membership never waits);
 * - the entry is pending: the totals ride on the batch's last message, which
 *   must be a put (a tombstone expires; then the summary goes in the batch);
 * - the entry is settled with these totals, written less than
 *   LAST_WRITE_PRECISION_MS ago: nothing (only `lastWrite` ages);
 * - the entry was written less than HOT_MS ago: a *pending* summary in the
 *   batch (later batches ride free until the settle);
 * - otherwise a settled summary in the batch.
 * So an object written continuously pays one extra message when it turns hot
 * and one per settle (at most every SETTLE_MAX_MS), not one per batch; an
 * owner killed while pending leaves an entry that readers resolve exactly
 * from the newest put's totals (resolveSummary).
 */
import type { ClassNames } from '../objects/subjects.ts';
import type { OutMessage } from '../storage/journal.ts';
import type { KeyIndex } from '../storage/key-index.ts';
import { encodeSummary, encodeTotals, indexNames, SUMMARY_HEADER, TOTALS_HEADER, type Summary } from './layout.ts';

export interface Totals {
  keys: number;
  bytes: number;
}

/** One key written by a batch: put (with its value size) or delete. */
export interface KeyChange {
  key: string;
  del: boolean;
  size: number;
}

/**
 * Totals after applying `changes` in order to a state with totals `before`,
 * where `sizeOf` gives the value size of a committed key (undefined = absent).
 * Bytes count each key's UTF-8 bytes plus its value's bytes.
 */
export function totalsAfter(before: Totals, sizeOf: (key: string) => number | undefined, changes: readonly KeyChange[]): Totals {
  let { keys, bytes } = before;
  const overlay = new Map<string, number | null>();
  for (const c of changes) {
    const prev = overlay.has(c.key) ? overlay.get(c.key)! : (sizeOf(c.key) ?? null);
    const keyBytes = Buffer.byteLength(c.key, 'utf8');
    if (prev !== null) {
      keys -= 1;
      bytes -= keyBytes + prev;
    }
    if (c.del) {
      overlay.set(c.key, null);
    } else {
      keys += 1;
      bytes += keyBytes + c.size;
      overlay.set(c.key, c.size);
    }
  }
  return { keys, bytes };
}

export function summaryMessage(subject: string, s: Summary): OutMessage {
  return { subject, data: encodeSummary(s), headers: { [SUMMARY_HEADER]: '1' } };
}

/** How stale `lastWrite` of a settled entry may be (the equal-totals saving). */
export const LAST_WRITE_PRECISION_MS = 1_000;
/** An entry written less than this ago makes the next change go pending. */
export const HOT_MS = 1_000;
/** A pending entry is settled after this long without a commit… */
export const SETTLE_QUIET_MS = 1_000;
/** …or this long after it went pending, whichever comes first. */
export const SETTLE_MAX_MS = 10_000;

/** What this activation last committed to the object's index entry. */
export interface EntryState {
  keys: number;
  bytes: number;
  /** When that summary was written (ms). */
  at: number;
  pending: boolean;
  /** When the entry went pending (ms), if it is. */
  pendingSince?: number;
}

export type SummaryPlan =
  | { kind: 'none' }
  /** The batch writes the entry itself (the object's delete): what it holds is no longer known. */
  | { kind: 'own' }
  /** A summary message appended to the batch. */
  | { kind: 'batch'; summary: Summary }
  /** The totals on the batch's last message (a put). */
  | { kind: 'totals'; summary: Summary };

export interface BatchShape {
  /** Every message is a key put or delete. */
  onlyKeys: boolean;
  /** The last message is a key put. */
  endsWithPut: boolean;
  /** The settle timer asked for a settled summary. */
  settle: boolean;
  /** For a settle: when the object was last written, as far as the activation knows (default now). */
  lastWrite?: number;
}

export function planSummary(last: EntryState | undefined, before: Totals, after: Totals, shape: BatchShape, now: number): SummaryPlan {
  const totals = { keys: after.keys, bytes: after.bytes, lastWrite: now };
  const pending = last?.pending === true;
  const settled = { ...totals, lastWrite: shape.lastWrite ?? now };
  if (shape.settle && pending) return { kind: 'batch', summary: settled };
  if (!shape.onlyKeys || (before.keys === 0) !== (after.keys === 0)) return { kind: 'batch', summary: pending ? { ...totals, pending: true } : totals };
  if (pending) return shape.endsWithPut ? { kind: 'totals', summary: totals } : { kind: 'batch', summary: { ...totals, pending: true } };
  // A settle asked by an activation that does not know the entry (the check at activation found it wrong): settled.
  if (shape.settle) return last === undefined ? { kind: 'batch', summary: settled } : { kind: 'none' };
  if (last !== undefined && last.keys === after.keys && last.bytes === after.bytes && now - last.at < LAST_WRITE_PRECISION_MS) return { kind: 'none' };
  if (last !== undefined && now - last.at < HOT_MS) return { kind: 'batch', summary: { ...totals, pending: true } };
  return { kind: 'batch', summary: totals };
}

/** The activation's knowledge of the entry after `plan` was committed (acknowledged). */
export function entryAfter(plan: SummaryPlan, last: EntryState | undefined, now: number): EntryState | undefined {
  if (plan.kind === 'none') return last;
  if (plan.kind === 'own') return undefined;
  const s = plan.summary;
  if (plan.kind === 'totals') return { keys: s.keys, bytes: s.bytes, at: last?.at ?? now, pending: true, pendingSince: last?.pendingSince ?? now };
  if (s.pending === true) return { keys: s.keys, bytes: s.bytes, at: now, pending: true, pendingSince: last?.pending === true ? (last.pendingSince ?? now) : now };
  return { keys: s.keys, bytes: s.bytes, at: now, pending: false };
}

/** Whether a pending entry should be settled now, given the last commit's time. */
export function settleDue(entry: EntryState | undefined, lastCommitAt: number, now: number): boolean {
  if (entry?.pending !== true) return false;
  return now - lastCommitAt >= SETTLE_QUIET_MS || now - (entry.pendingSince ?? now) >= SETTLE_MAX_MS;
}

/**
 * What an activation can take for known about the entry it found (its index
 * of the object loaded, with these totals): a settled entry with the same
 * totals; anything else (absent: an object written before the index existed;
 * pending: its owner died; different totals) is undefined — settle it.
 */
export function entryFound(found: Summary | undefined, totals: Totals): EntryState | undefined {
  if (found === undefined || found.pending === true || found.keys !== totals.keys || found.bytes !== totals.bytes) return undefined;
  return { keys: found.keys, bytes: found.bytes, at: found.lastWrite, pending: false };
}

/** The index hook of one class, used by the commit path (sidecar/storage/object-state.ts). */
export interface ObjectIndexHook {
  /** The subject of the object's index entry. */
  entrySubject(encId: string): string;
  /**
   * The messages to commit for `msgs` (the summary appended, or the totals
   * set on the last put) and the plan to pass to entryAfter on success.
   */
  prepare(encId: string, last: EntryState | undefined, committed: KeyIndex, msgs: readonly OutMessage[], settle: false | { lastWrite: number }, now: number): { msgs: OutMessage[]; plan: SummaryPlan };
}

export function objectIndexHook(names: ClassNames): ObjectIndexHook {
  const idx = indexNames(names);
  return {
    entrySubject: (encId) => idx.subject(encId),
    prepare(encId, last, committed, msgs, settle, now) {
      const subject = idx.subject(encId);
      // A batch that writes the entry itself (the object's delete) gets nothing more.
      if (msgs.some((m) => m.subject === subject)) return { msgs: [...msgs], plan: { kind: 'own' } };
      if (msgs.length === 0 && settle === false) return { msgs: [], plan: { kind: 'none' } };
      const changes: KeyChange[] = [];
      let onlyKeys = true;
      for (const m of msgs) {
        const k = m.headers['Castellan-Key'];
        if (k === undefined) {
          onlyKeys = false;
          continue;
        }
        changes.push({ key: Buffer.from(k, 'base64url').toString('utf8'), del: m.headers['Castellan-Op'] === 'del', size: m.data.length });
      }
      const lastMsg = msgs[msgs.length - 1];
      const endsWithPut = lastMsg !== undefined && lastMsg.headers['Castellan-Key'] !== undefined && lastMsg.headers['Castellan-Op'] !== 'del';
      const before = { keys: committed.size, bytes: committed.totalBytes };
      const after = totalsAfter(before, (key) => committed.get(key)?.size, changes);
      const plan = planSummary(last, before, after, settle === false ? { onlyKeys, endsWithPut, settle: false } : { onlyKeys, endsWithPut, settle: true, lastWrite: settle.lastWrite }, now);
      if (plan.kind === 'none' || plan.kind === 'own') return { msgs: [...msgs], plan };
      if (plan.kind === 'batch') return { msgs: [...msgs, summaryMessage(subject, plan.summary)], plan };
      const out = [...msgs];
      out[out.length - 1] = { ...lastMsg!, headers: { ...lastMsg!.headers, [TOTALS_HEADER]: encodeTotals(plan.summary) } };
      return { msgs: out, plan };
    },
  };
}
