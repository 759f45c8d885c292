/**
 * Host leases and object ownership: the pure decisions behind single
 * activation. No I/O and no clock reads: every function takes `now`, a reading
 * of the caller's own monotonic clock (performance.now()).
 *
 * Records (all in the class's JetStream stream, see subjects.ts):
 * - host record on `…host.<pod>` = {kind, pod, sessionId, ts}. `sessionId` is
 *   random per process start. Kinds: `alive` (heartbeat), `draining`
 *   (heartbeat of a host that is shutting down: no new placements), `leave`
 *   (written by the host itself after it released everything), `fenced`
 *   (written by another host that declared this session dead).
 *   Every host record is written with compare-and-set on the subject's last
 *   sequence, so heartbeats of one session form one unbroken chain.
 * - owner record on `…own.<encId>` = {state: owned|released, pod, sessionId}.
 *   Its stream sequence is the object's fencing token. Written with
 *   compare-and-set on the sequence the writer last read (0 = absent).
 *
 * THE INVARIANT: at no moment do two hosts serve the same object.
 *
 * 1. A host serves an object only while (a) the owner record names its
 *    current session (it claimed it by CAS and has not released it) and
 *    (b) its own lease is valid: now < sentAt + TTL − margin, where sentAt is
 *    the monotonic time at which it SENT the last heartbeat that was then
 *    acknowledged (selfLeaseValid). Sending happens before storing, so the
 *    lease never starts later than the heartbeat exists.
 * 2. Another host may take an object owned by session S only when S is dead:
 *    - S left (`leave`: it released everything and stopped serving first), or
 *    - S was fenced: someone wrote a `fenced` record by CAS on the sequence of
 *      the last S heartbeat it observed, after NOT observing a newer one for
 *      TTL + margin on its own monotonic clock. It observed that heartbeat
 *      after it was sent, so S's lease from it ended at
 *      sentAt + TTL − margin < observedAt + TTL + margin ≤ fence time; and
 *      because the fence took the subject's sequence, every later S heartbeat
 *      fails its CAS, so S can never extend its lease past that point (it
 *      starts a new session instead, owning nothing), or
 *    - the pod started a new session S' (its first heartbeat is a CAS too, so
 *      S cannot renew after it) and either S' says S was already dead
 *      (`prevDead`) or TTL + margin have passed since S' was first observed.
 * Only durations measured on one machine's monotonic clock are compared, so
 * wall-clock skew between pods does not matter; `margin` absorbs clock-rate
 * drift and scheduling. TTL here is the HOLDER's: host records carry the
 * writer's TTL (`ttl`) and observers judge a host's heartbeats by it
 * (hostTiming), not by their own setting, so a caller or a host configured
 * with a shorter TTL never takes a live host for expired (and never fences
 * it early); records without `ttl` are judged by the observer's. Watch lag (seeing a heartbeat late) only delays
 * failover, it cannot break the invariant: the CAS on the host subject is what
 * settles a race between a late heartbeat and a fence.
 */

export interface LeaseTiming {
  /** Host lease TTL (ms). */
  ttl: number;
  /** Safety margin (ms) for clock drift and scheduling. */
  margin: number;
}

export function defaultMargin(ttl: number): number {
  return Math.max(50, Math.round(ttl / 8));
}

export type HostKind = 'alive' | 'draining' | 'leave' | 'fenced';

export interface HostRecord {
  kind: HostKind;
  pod: string;
  sessionId: string;
  /** Wall-clock ms at the writer, informational only. */
  ts: number;
  /** On the first heartbeat of a session: the session it replaced, and whether that one was already dead. */
  prevSessionId?: string;
  prevDead?: boolean;
  /** On `fenced`: who fenced. */
  by?: string;
  /** The writer's lease TTL (ms), on its own heartbeats and `leave`. */
  ttl?: number;
  /**
   * Objects whose request ran past turnTimeout on this host (object hosts; the
   * operator turns them into Warning Events): how many, and the first few.
   */
  stuck?: StuckReport;
}

/** A host's stuck objects, as its heartbeat reports them (bounded: `objects` has at most 5). */
export interface StuckReport {
  count: number;
  objects: { id: string; rid: string; forMs: number }[];
}

export interface OwnerRecord {
  state: 'owned' | 'released';
  pod: string;
  sessionId: string;
  ts: number;
}

/** What one observer knows about one host, on its own monotonic clock. */
export interface HostState {
  seq: number;
  record: HostRecord;
  /** When this observer first saw `seq`. */
  observedAt: number;
  /** When this observer first saw `record.sessionId`. */
  sessionSince: number;
  /** Sessions of this pod known to be dead (bounded). */
  deadSessions: string[];
}

const MAX_DEAD_SESSIONS = 16;

/** Folds one observed host record (seq, record) into the observer's state at `now`. */
export function observeHost(prev: HostState | undefined, seq: number, record: HostRecord, now: number): HostState {
  if (prev !== undefined && seq <= prev.seq) return prev;
  const dead = prev === undefined ? [] : [...prev.deadSessions];
  const markDead = (s: string) => {
    if (!dead.includes(s)) dead.push(s);
    while (dead.length > MAX_DEAD_SESSIONS) dead.shift();
  };
  if (prev !== undefined && (prev.record.kind === 'leave' || prev.record.kind === 'fenced')) markDead(prev.record.sessionId);
  if (record.kind === 'leave' || record.kind === 'fenced') markDead(record.sessionId);
  if (record.prevSessionId !== undefined && record.prevDead === true) markDead(record.prevSessionId);
  const sameSession = prev !== undefined && prev.record.sessionId === record.sessionId;
  return {
    seq,
    record,
    observedAt: now,
    sessionSince: sameSession ? prev.sessionSince : now,
    deadSessions: dead,
  };
}

/** The owner may serve only before sentAt + TTL − margin (sentAt of its last acknowledged heartbeat). */
export function selfLeaseValid(lastSentAt: number | undefined, now: number, t: LeaseTiming): boolean {
  return lastSentAt !== undefined && now < lastSentAt + t.ttl - t.margin;
}

/** When the self lease ends (monotonic ms), or -Infinity. */
export function selfLeaseEnd(lastSentAt: number | undefined, t: LeaseTiming): number {
  return lastSentAt === undefined ? -Infinity : lastSentAt + t.ttl - t.margin;
}

/** The timing to judge `host`'s heartbeats by: its own TTL when its records carry one, else the observer's. */
export function hostTiming(host: HostState, t: LeaseTiming): LeaseTiming {
  const ttl = host.record.ttl;
  return ttl === undefined || !(ttl > 0) ? t : { ttl, margin: defaultMargin(ttl) };
}

export type SessionStatus =
  /** Heartbeats observed recently: the session is (possibly) serving. */
  | 'live'
  /** Certainly no longer serving: may be taken over at once. */
  | 'dead'
  /** No heartbeat observed for TTL + margin: may be taken over after fencing the host record. */
  | 'expired'
  /** Replaced by a newer session of the pod too recently: wait. */
  | 'wait';

export function sessionStatus(host: HostState | undefined, sessionId: string, now: number, observer: LeaseTiming): SessionStatus {
  if (host === undefined) return 'expired';
  const t = hostTiming(host, observer);
  if (host.deadSessions.includes(sessionId)) return 'dead';
  if (host.record.sessionId === sessionId) {
    if (host.record.kind === 'leave' || host.record.kind === 'fenced') return 'dead';
    return now - host.observedAt > t.ttl + t.margin ? 'expired' : 'live';
  }
  return now - host.sessionSince > t.ttl + t.margin ? 'dead' : 'wait';
}

/** Whether a host can take new placements (alive heartbeat observed within TTL + margin). */
export function placeable(host: HostState, now: number, observer: LeaseTiming): boolean {
  const t = hostTiming(host, observer);
  return host.record.kind === 'alive' && now - host.observedAt <= t.ttl + t.margin;
}

/** Whether requests may be sent to the host at all (alive or draining, and not expired). */
export function reachable(host: HostState, now: number, observer: LeaseTiming): boolean {
  const t = hostTiming(host, observer);
  return (host.record.kind === 'alive' || host.record.kind === 'draining') && now - host.observedAt <= t.ttl + t.margin;
}

/**
 * Whether a request already delivered to `pod`'s session `sessionId` can no
 * longer be answered, so a caller may stop waiting (it still may have run):
 * the session was fenced, its lease expired, or the pod restarted as a new
 * session (a graceful predecessor answered before it left). A session that
 * wrote `leave` drained gracefully: it answered every
 * request it received, and later ones got "no responders", so its callers
 * keep waiting for the reply.
 */
export function lostInFlight(host: HostState | undefined, sessionId: string | undefined, now: number, observer: LeaseTiming): boolean {
  if (host === undefined) return false;
  const t = hostTiming(host, observer);
  if (sessionId !== undefined && host.record.sessionId !== sessionId) return true;
  if (host.record.kind === 'leave') return false;
  if (host.record.kind === 'fenced') return true;
  return now - host.observedAt > t.ttl + t.margin;
}

export type ClaimDecision =
  | { action: 'serve' }
  | { action: 'claim'; expectSeq: number }
  | { action: 'fence'; pod: string; sessionId: string; expectHostSeq: number }
  | { action: 'redirect'; pod: string }
  | { action: 'wait'; reason: string };

/**
 * What a host (`self`) does with a request for an object whose owner record is
 * `owner` (undefined when absent), given its view of the owner's host.
 */
export function decideClaim(
  owner: { seq: number; record: OwnerRecord } | undefined,
  self: { pod: string; sessionId: string },
  ownerHost: HostState | undefined,
  now: number,
  t: LeaseTiming,
): ClaimDecision {
  if (owner === undefined) return { action: 'claim', expectSeq: 0 };
  const rec = owner.record;
  if (rec.state === 'released') return { action: 'claim', expectSeq: owner.seq };
  if (rec.pod === self.pod && rec.sessionId === self.sessionId) return { action: 'serve' };
  switch (sessionStatus(ownerHost, rec.sessionId, now, t)) {
    case 'dead':
      return { action: 'claim', expectSeq: owner.seq };
    case 'expired':
      return { action: 'fence', pod: rec.pod, sessionId: rec.sessionId, expectHostSeq: ownerHost?.seq ?? 0 };
    case 'wait':
      return { action: 'wait', reason: `host ${rec.pod} restarted recently; its previous session's lease has not expired yet` };
    case 'live':
      return rec.pod === self.pod
        ? { action: 'wait', reason: 'owned by a previous session of this pod whose lease has not expired yet' }
        : { action: 'redirect', pod: rec.pod };
  }
}
