/**
 * Pure decisions of replicated queues, no I/O and no clock reads (every
 * function takes `now`, wall-clock ms): a message's visibility,
 * dead-lettering, reply sizes, receive shares, the deduplication window,
 * target choice for replication and batch validation. Who holds a message
 * is takeover.ts.
 */
import { LIMITS } from './spec.ts';

/** The parts of a stored replica these decisions look at. */
export interface MsgView {
  id: string;
  /** Host that stored the initial replica (the first holder, takeover.ts). */
  primary: string;
  replicas: string[];
  enqueuedAt: number;
  /** Not receivable before (delay). */
  visibleAt: number;
  /** Received and not yet returned before this (0 = never received). */
  invisibleUntil: number;
  receiveCount: number;
}

export type Visibility = 'visible' | 'inflight' | 'delayed';

export function visibilityOf(m: Pick<MsgView, 'visibleAt' | 'invisibleUntil'>, now: number): Visibility {
  if (now < m.visibleAt) return 'delayed';
  if (now < m.invisibleUntil) return 'inflight';
  return 'visible';
}

/** When the message next changes visibility (for wake-ups), or undefined when it is visible now. */
export function nextVisibleAt(m: Pick<MsgView, 'visibleAt' | 'invisibleUntil'>, now: number): number | undefined {
  const at = Math.max(m.visibleAt, m.invisibleUntil);
  return at > now ? at : undefined;
}

export function expired(m: Pick<MsgView, 'enqueuedAt'>, retentionMs: number, now: number): boolean {
  return now >= m.enqueuedAt + retentionMs;
}

/** What a host knows about a peer: `live` (heartbeats seen), `expired` (none for TTL + margin: fence first), `dead` (left, fenced, or gone). */
export type PeerStatus = 'live' | 'expired' | 'dead';

/** A message that has been received maxReceiveCount times moves to the dead-letter queue instead of a further delivery. */
export function shouldDeadLetter(m: Pick<MsgView, 'receiveCount'>, deadLetter: { queue: string; maxReceiveCount: number } | undefined): boolean {
  return deadLetter !== undefined && m.receiveCount >= deadLetter.maxReceiveCount;
}

export interface DedupMarker {
  state: 'pending' | 'done';
  /** Wall ms of the first send. */
  ts: number;
  messageId?: string;
  replicas?: string[];
}

export type DedupDecision =
  /** No live marker: this send is the first; write a pending marker. */
  | { action: 'new' }
  /** A send with this id completed within the window: answer with its result. */
  | { action: 'duplicate'; messageId: string; replicas: string[] }
  /** Another send with this id is in progress. */
  | { action: 'wait' };

/** Pending markers older than this are abandoned sends (their sender crashed). */
export const DEDUP_PENDING_STALE_MS = 30_000;

export function dedupDecision(marker: DedupMarker | undefined, now: number): DedupDecision {
  if (marker === undefined) return { action: 'new' };
  if (now - marker.ts >= LIMITS.dedupWindowMs) return { action: 'new' };
  if (marker.state === 'done' && marker.messageId !== undefined) return { action: 'duplicate', messageId: marker.messageId, replicas: marker.replicas ?? [] };
  if (now - marker.ts >= DEDUP_PENDING_STALE_MS) return { action: 'new' };
  return { action: 'wait' };
}

/**
 * Up to `n` distinct hosts from `live` (in order, starting at `start` mod
 * length, to spread load), skipping `exclude`.
 */
export function pickTargets(live: readonly string[], exclude: ReadonlySet<string>, n: number, start: number): string[] {
  const out: string[] = [];
  const len = live.length;
  for (let i = 0; i < len && out.length < n; i++) {
    const p = live[(((start + i) % len) + len) % len] as string;
    if (!exclude.has(p) && !out.includes(p)) out.push(p);
  }
  return out;
}

/** Batch entry ids, as SQS: 1–80 characters of `[A-Za-z0-9_-]`, unique in the batch. */
export const batchEntryIdPattern = /^[A-Za-z0-9_-]{1,80}$/;

/** Problems of a batch as a whole (size, entry ids), or undefined when it is fine. */
export function batchProblem(entries: readonly { id: string }[]): string | undefined {
  if (entries.length === 0) return 'entries must not be empty';
  if (entries.length > LIMITS.maxBatch) return `entries has ${entries.length} items; the limit is ${LIMITS.maxBatch}`;
  const seen = new Set<string>();
  for (const [i, e] of entries.entries()) {
    if (!batchEntryIdPattern.test(e.id)) return `entries.${i}.id must be 1-80 characters of A-Z a-z 0-9 _ -`;
    if (seen.has(e.id)) return `entries.${i}.id "${e.id}" is used twice`;
    seen.add(e.id);
  }
  return undefined;
}

/** JSON bytes a received message adds to a receive reply beyond its body and attributes (ids, replica list, field names). */
export const REPLY_ENVELOPE_BYTES = 1_024;

/**
 * How many of `sizes` (JSON bytes of body + attributes, in order) fit in one
 * reply of at most `budget` bytes, and at most `max` of them. Never 0 when the
 * first fits; the sender refuses a message that could not fit alone.
 */
export function fitReply(sizes: readonly number[], budget: number, max: number): number {
  let used = 0;
  let n = 0;
  for (const s of sizes) {
    if (n >= max) break;
    const cost = s + REPLY_ENVELOPE_BYTES;
    if (used + cost > budget) break;
    used += cost;
    n++;
  }
  return n;
}

/** JSON bytes of a body plus its attributes as they travel in host requests and replies. */
export function encodedSize(body: string, attributes: Record<string, string>): number {
  return Buffer.byteLength(JSON.stringify(body), 'utf8') + Buffer.byteLength(JSON.stringify(attributes), 'utf8');
}

/**
 * Splits `need` messages over `hosts` asked in parallel: each of the first
 * min(need, hosts) hosts gets an equal share (the first ones one more), so the
 * shares sum to exactly `need` and nothing is received that cannot be returned.
 */
export function shareOut(hosts: readonly string[], need: number): { pod: string; max: number }[] {
  const k = Math.min(need, hosts.length);
  if (k <= 0) return [];
  const base = Math.floor(need / k);
  const extra = need % k;
  return hosts.slice(0, k).map((pod, i) => ({ pod, max: base + (i < extra ? 1 : 0) }));
}
