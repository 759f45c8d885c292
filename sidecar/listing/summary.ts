/**
 * The write-path hook of the object index: given an object's committed state
 * and the messages of the batch about to be committed, the summary message to
 * add to that same batch (layout.ts). Pure apart from the `now` it is given.
 *
 * Why this is correct: the batch is atomic and fenced on the owner record
 * (sidecar/storage/journal.ts), so the summary lands exactly when the data
 * lands; the totals are computed from the committed state the owner holds in
 * memory (equal to what is durable, object-state.ts) plus the batch's own
 * changes applied in order, so after the commit the summary equals the
 * object's storage. A batch that already writes the summary subject (the
 * delete of an object removes its entry) gets no second one.
 *
 * One saving: a batch of key writes that leaves the totals as they were (an
 * overwrite with a value of the same size) needs no new summary when this
 * host wrote one with those totals less than LAST_WRITE_PRECISION_MS ago —
 * the entry is already right, only `lastWrite` ages, by less than that.
 * (Invariant: after every successful commit the entry's totals equal the
 * storage's; a skipped batch changes neither, a failed one neither, so the
 * skip keeps it whatever the remembered summary's own batch became.) Alarm
 * writes always carry the summary: they are what lists an alarm-only object.
 */
import type { ClassNames } from '../objects/subjects.ts';
import type { OutMessage } from '../storage/journal.ts';
import type { KeyIndex } from '../storage/key-index.ts';
import { encodeSummary, indexNames, SUMMARY_HEADER, type Summary } from './layout.ts';

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

/** A function the commit path calls before each commit (sidecar/storage/object-state.ts). */
export type SummarizeCommit = (encId: string, committed: KeyIndex, msgs: readonly OutMessage[]) => OutMessage | undefined;

/** How stale `lastWrite` may be (see the header). */
export const LAST_WRITE_PRECISION_MS = 1_000;
const MAX_REMEMBERED = 10_000;

/** The hook for one class: every batch that changes an object's summary carries it. */
export function summarizer(names: ClassNames, now: () => number = Date.now): SummarizeCommit {
  const idx = indexNames(names);
  /** encId → the last summary this host put into a batch. */
  const recent = new Map<string, { keys: number; bytes: number; at: number }>();
  return (encId, committed, msgs) => {
    if (msgs.length === 0) return undefined;
    const subject = idx.subject(encId);
    if (msgs.some((m) => m.subject === subject)) return undefined;
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
    const before = { keys: committed.size, bytes: committed.totalBytes };
    const t = totalsAfter(before, (key) => committed.get(key)?.size, changes);
    const at = now();
    const last = recent.get(encId);
    if (onlyKeys && t.keys === before.keys && t.bytes === before.bytes && last !== undefined && last.keys === t.keys && last.bytes === t.bytes && at - last.at < LAST_WRITE_PRECISION_MS) {
      return undefined;
    }
    recent.delete(encId);
    recent.set(encId, { keys: t.keys, bytes: t.bytes, at });
    if (recent.size > MAX_REMEMBERED) recent.delete(recent.keys().next().value!);
    return summaryMessage(subject, { keys: t.keys, bytes: t.bytes, lastWrite: at });
  };
}
