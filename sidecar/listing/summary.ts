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

/** The hook for one class: every non-empty batch carries the object's new summary. */
export function summarizer(names: ClassNames, now: () => number = Date.now): SummarizeCommit {
  const idx = indexNames(names);
  return (encId, committed, msgs) => {
    if (msgs.length === 0) return undefined;
    const subject = idx.subject(encId);
    if (msgs.some((m) => m.subject === subject)) return undefined;
    const changes: KeyChange[] = [];
    for (const m of msgs) {
      const k = m.headers['Castellan-Key'];
      if (k === undefined) continue;
      changes.push({ key: Buffer.from(k, 'base64url').toString('utf8'), del: m.headers['Castellan-Op'] === 'del', size: m.data.length });
    }
    const t = totalsAfter({ keys: committed.size, bytes: committed.totalBytes }, (key) => committed.get(key)?.value.length, changes);
    return summaryMessage(subject, { keys: t.keys, bytes: t.bytes, lastWrite: now() });
  };
}
