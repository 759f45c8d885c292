/**
 * A queue host (role `queue-host`): stores replicas of its queue's messages
 * in its own host stream, keeps a compact in-memory index of them
 * (copies.ts: typed arrays, about 100 bytes per copy; bodies and attributes
 * stay in JetStream and are read when a message is delivered) with a ready
 * list and a due heap (ready.ts) so a receive takes from a list instead of
 * scanning, and answers the RPCs of sidecars and peer hosts.
 *
 * - Start: the index is rebuilt from the host stream in pages (the event
 *   loop gets a turn after every page; no body is kept), pending
 *   deletes and purges (tombstones) are applied, and only then does the host
 *   write its first heartbeat: until it has loaded it is not placeable, and a
 *   restart that takes longer than its lease makes peers take its messages
 *   over exactly as if it were down. Its RPC subject is answered from the
 *   first moment: deletes and purges that arrive while it loads are kept as
 *   tombstones of its own and applied before it serves.
 * - enqueue: stores the initial replica and, in parallel, sends replication
 *   requests to R−1 other live hosts; a failed one is retried on another host
 *   (and the failed host gets a tombstone, in case it stored the copy late;
 *   the request's deadline and the host's memory of deleted ids keep such a
 *   copy from surviving). When a retry changed the replica list, every copy
 *   is given the final list before the 201, so all copies agree.
 * - One visible copy: the holder (takeover.ts: the primary's session, or
 *   the replica the takeover log moved it to) delivers it; standbys keep
 *   theirs hidden. A
 *   receive stores the new receive count and invisibility on the holder and
 *   on every standby before it answers, so a promotion continues from them
 *   (a poison message still reaches its dead-letter queue after a failover).
 * - Replies are bounded by bytes: a receive returns fewer messages rather
 *   than exceed the NATS max_payload.
 * - Takeover: every pass, a host fences the lease of a peer that went silent
 *   and writes ONE death record for its session (takeover.ts), whatever the
 *   number of its messages; each replica then knows from the log whether it
 *   holds a message. A starting host retires its previous session the same
 *   way (after its lease certainly ended) and writes a birth record.
 * - Deleted stays deleted: a purge leaves a mark (in the host stream) below
 *   which no copy is accepted or kept; a delete of a copy not (yet) here is
 *   remembered long enough to refuse a late replication of it.
 */
import { randomUUID } from 'node:crypto';
import { decideAccess, identityFromSubject, type AccessPolicy } from '../../common/access.ts';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { asCastellanError, CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { QueueClient, QueueCtx, Tombstone } from './client.ts';
import { CopyIndex, DL_REFUSED, IN_DUE, IN_READY, MOVING, NOT_QUEUED, type CopyGroup } from './copies.ts';
import { dedupDecision, encodedSize, fitReply, pickTargets, shouldDeadLetter, type DedupMarker } from './logic.ts';
import { DueHeap, SlotDeque } from './ready.ts';
import { TakeoverLog, type TakeoverKind, type TakeoverRecord } from './takeover.ts';
import type { HostRecord } from '../objects/lease.ts';
import type { HostHeartbeat } from '../leases/heartbeat.ts';
import type { QueueMetrics } from './metrics.ts';
import { LIMITS } from './spec.ts';
import { CONFLICT, type MessageState, type StoredMessage } from './store.ts';
import { decodeJson, encodeJson, type HostReply, type HostRequest, type HostStats, type ReceivedMessage, type StateUpdate } from './wire.ts';

export interface QueueHostOptions {
  pod: string;
  ttlMs: number;
  requestTimeoutMs: number;
  /** Who may call this queue (common/access.ts): checked on every request, from the caller named in its subject. */
  access: AccessPolicy;
}

/** Operations only the queue's own hosts send each other: never from another namespace. */
const hostOnlyOps = new Set<HostRequest['op']>(['replicate', 'state', 'states']);
/** Operations a metric label may name (anything else is `unknown`: labels stay bounded whatever a caller sends). */
const hostOps = new Set<string>(['enqueue', 'replicate', 'receive', 'delete', 'visibility', 'state', 'states', 'stats', 'purge'] satisfies HostRequest['op'][]);

/** How long a delete of a copy this host does not have is remembered (a late replication of it is refused). */
const DEAD_ID_MS = 60_000;
/** Replication requests are not acted on after this long (the primary gave up on them before). */
const REPLICATE_DEADLINE_MS = 8_000;
/** Headroom left in a reply for everything but message bodies and attributes. */
const REPLY_HEADROOM = 16 * 1024;
/** Indexes larger than this get their full pass (retention, depth metrics) every FULL_PASS_MS, not every tick. */
const FULL_PASS_EVERY_TICK = 50_000;
const FULL_PASS_MS = 2_000;
/** After a failed move to the dead-letter queue, the next try waits this long. */
const MOVE_RETRY_MS = 5_000;

export class QueueHost {
  private readonly nc: NatsConnection;
  private readonly ctx: QueueCtx;
  private readonly client: QueueClient;
  private readonly heartbeat: HostHeartbeat;
  private readonly metrics: QueueMetrics;
  private readonly opts: QueueHostOptions;
  private readonly log: Logger;
  /** Every copy stored here (copies.ts). */
  readonly copies = new CopyIndex();
  /** Held copies visible now, and held copies that become visible later (ready.ts). */
  private readonly readyList = new SlotDeque();
  private readonly dueHeap = new DueHeap();
  /** After a failed move to the dead-letter queue: slot → wall ms of the next try (rare). */
  private readonly moveRetryAt = new Map<number, number>();
  /** Deaths and births of host sessions: who holds which message (takeover.ts). */
  readonly takeovers = new TakeoverLog();
  /** Ids deleted here while no copy was here (id → wall ms): a late replication of them is refused. */
  private readonly deadIds = new Map<string, number>();
  /**
   * Which copy groups (copies.ts) this session holds: recomputed from the
   * takeover log only when the log or the session changes (per group, not per
   * copy), extended when a new group appears.
   */
  private heldGroups: boolean[] = [];
  private heldFor = { version: -1, session: '' };
  /** Last full pass over every copy (retention, stats); big indexes get one every FULL_PASS_MS. */
  private lastFullPass = 0;
  private lastStats: HostStats = { visible: 0, inFlight: 0, delayed: 0, stored: 0 };
  private lastStatsAt = 0;
  /** Messages enqueued at or before this (wall ms) were purged. */
  private purgedBefore = 0;
  private sub: Subscription | undefined;
  /** The index is loaded (deletes apply directly; before, they become tombstones). */
  private loaded = false;
  private started = false;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeLoop: (() => void) | undefined;
  private rr = Math.floor(Math.random() * 1000);

  constructor(nc: NatsConnection, ctx: QueueCtx, client: QueueClient, heartbeat: HostHeartbeat, metrics: QueueMetrics, opts: QueueHostOptions, log: Logger) {
    this.nc = nc;
    this.ctx = ctx;
    this.client = client;
    this.heartbeat = heartbeat;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
  }

  private get self(): string {
    return this.opts.pod;
  }

  private get spec() {
    return this.ctx.spec;
  }

  /**
   * Called by the heartbeat when another host fenced this session: the fencer
   * writes its death record (its messages move on); the new session holds
   * only what the log gives it, after its birth record (next pass).
   */
  onFenced(): void {
    this.wakeLoop?.();
  }

  private get session(): string {
    return this.heartbeat.sessionId;
  }

  /** Whether this host's current session holds the visible copies of group `g` (from the log). */
  private holdsGroup(g: CopyGroup): boolean {
    const h = this.takeovers.holder(g.primary, g.ps, g.replicas);
    return h !== undefined && h.pod === this.self && h.session === this.session;
  }

  /**
   * Brings the held groups up to date with the log and this session; copies
   * of groups this session just gained are queued for delivery (one pass over
   * the typed arrays, only when a takeover or birth record arrived).
   */
  private syncHeld(now: number): void {
    if (this.heldFor.version === this.takeovers.version && this.heldFor.session === this.session) return;
    const before = this.heldGroups;
    this.heldGroups = this.copies.groups.map((g) => this.holdsGroup(g));
    this.heldFor = { version: this.takeovers.version, session: this.session };
    const gained = this.heldGroups.some((h, g) => h && before[g] !== true);
    if (!gained) return;
    const c = this.copies;
    for (let s = 0; s < c.end; s++) if (c.live(s) && c.queued(s) === NOT_QUEUED && this.heldGroups[c.gid(s)] === true) this.queueSlot(s, now);
  }

  /** Whether this session holds the visible copy in `slot`. */
  private isHeld(slot: number): boolean {
    this.syncHeld(Date.now());
    return this.heldGroup(this.copies.gid(slot));
  }

  /** Whether this session holds group `g` as of the last syncHeld (a group new since then is decided now). */
  private heldGroup(g: number): boolean {
    const groups = this.copies.groups;
    while (this.heldGroups.length <= g) this.heldGroups.push(this.holdsGroup(groups[this.heldGroups.length] as CopyGroup));
    return this.heldGroups[g] === true;
  }

  /** When the copy in `slot` may next be delivered (delay, visibility, a dead-letter retry). */
  private dueOf(slot: number): number {
    const c = this.copies;
    const at = Math.max(c.visibleAt(slot), c.invisibleUntil(slot));
    if (this.moveRetryAt.size === 0) return at;
    return Math.max(at, this.moveRetryAt.get(slot) ?? 0);
  }

  /** Puts a held copy in the ready list (visible now) or the due heap. */
  private queueSlot(slot: number, now: number): void {
    const c = this.copies;
    const due = this.dueOf(slot);
    if (due > now) {
      c.setQueued(slot, IN_DUE);
      this.dueHeap.push(due, slot);
    } else if (c.queued(slot) !== IN_READY) {
      c.setQueued(slot, IN_READY);
      this.readyList.push(slot);
    }
  }

  /** After a copy's state changed: queued again when held, left out otherwise. */
  private requeue(slot: number, now: number): void {
    if (this.isHeld(slot)) this.queueSlot(slot, now);
    else this.copies.setQueued(slot, NOT_QUEUED);
  }

  /** Adds a new copy to the index (and to the ready list or due heap when this session holds it). */
  private addCopy(m: StoredMessage, size: number, replicas: readonly string[] = m.replicas): number {
    const slot = this.copies.add({ id: m.id, primary: m.primary, ps: m.ps ?? '', replicas, enqueuedAt: m.enqueuedAt, visibleAt: m.visibleAt, receiveCount: 0, invisibleUntil: 0, size });
    if (this.loaded) this.requeue(slot, Date.now());
    return slot;
  }

  /** Removes a copy from the index (its ready/due entries go stale and are dropped when reached). */
  private removeCopy(slot: number): void {
    this.copies.remove(slot);
    this.moveRetryAt.delete(slot);
  }

  /** Moves the due heap's entries that are due by `now` to the ready list; true when any became visible. */
  private drainDue(now: number): boolean {
    const c = this.copies;
    const e = { slot: 0, time: 0 };
    let any = false;
    while (this.dueHeap.peekTime() <= now && this.dueHeap.pop(e)) {
      const s = e.slot;
      if (!c.live(s) || c.queued(s) !== IN_DUE || this.dueOf(s) !== e.time) continue; // stale entry
      if (!this.isHeld(s)) {
        c.setQueued(s, NOT_QUEUED);
        continue;
      }
      this.moveRetryAt.delete(s);
      // A message that used up its receives moves to the DLQ as soon as it is visible again, not at the next receive.
      if (this.deadLetterDue(s)) continue;
      c.setQueued(s, IN_READY);
      this.readyList.push(s);
      any = true;
    }
    return any;
  }

  /** When the copy in `slot` must move to the dead-letter queue instead of being delivered: starts the move (out of the ready list). */
  private deadLetterDue(slot: number): boolean {
    const c = this.copies;
    if (c.flag(slot, DL_REFUSED) || !shouldDeadLetter({ receiveCount: c.receiveCount(slot) }, this.spec.deadLetter)) return false;
    c.setQueued(slot, NOT_QUEUED);
    void this.deadLetter(slot);
    return true;
  }

  private expiredOrPurged(slot: number, now: number): boolean {
    const enq = this.copies.enqueuedAt(slot);
    return now >= enq + this.spec.messageRetentionMs || enq <= this.purgedBefore;
  }

  /** Loads the index, applies pending deletes, then starts the lease (see the header for why in this order). */
  async start(): Promise<void> {
    this.sub = this.nc.subscribe(this.ctx.names.rpcServe(this.self), {
      callback: (err, m) => {
        if (err !== null) return;
        this.handle(m).catch((e: unknown) => this.log.error('queue host request handling failed', { error: describeError(e) }));
      },
    });
    await this.nc.flush();
    // This pod's last heartbeat record, read before the load: its lease is over TTL + margin later.
    const prev = await this.ctx.store.last<HostRecord>(this.ctx.names.host(this.self));
    const prevReadAt = performance.now();
    const began = performance.now();
    this.copies.reserve(await this.ctx.store.hostStreamMessages(this.self));
    await this.ctx.store.loadAll(this.self, {
      message: (m, size) => {
        if (!this.copies.has(m.id)) this.addCopy(m, size);
      },
      state: (id, s) => {
        const slot = this.copies.slotOf(id);
        if (slot >= 0) this.applyState(slot, s);
      },
      purge: (before) => {
        this.purgedBefore = Math.max(this.purgedBefore, before);
      },
    });
    this.copies.trim();
    this.log.info('queue host index rebuilt from JetStream', { replicas: this.copies.size, indexBytes: this.copies.bytes, ms: Math.round(performance.now() - began) });
    this.loaded = true;
    await this.readLog();
    await this.dropPurged();
    await this.applyTombs();
    await this.retireOwnSessions(prev, prevReadAt);
    await this.writeRecord('birth', this.self, this.session, true);
    await this.heartbeat.start();
    await this.applyTombs();
    this.started = true;
    this.loopDone = this.loop();
  }

  ready(): true | string {
    if (!this.started) return 'queue host still loading its replicas';
    if (!this.heartbeat.leaseValid()) return 'queue host lease not valid';
    return true;
  }

  /** Applies a stored or received receive state (the higher receive count wins) and replica list. */
  private applyState(slot: number, s: MessageState): void {
    const c = this.copies;
    if (s.receiveCount >= c.receiveCount(slot)) c.setReceive(slot, s.receiveCount, s.invisibleUntil);
    if (s.replicas !== undefined && s.replicas.length > 0) c.setReplicas(slot, s.replicas);
    if (this.loaded && c.queued(slot) !== NOT_QUEUED) this.requeue(slot, Date.now());
  }

  // ---- RPC ----

  private async handle(m: Msg): Promise<void> {
    let reply: HostReply;
    let op = 'unknown';
    try {
      const req = decodeJson<HostRequest>(m.data);
      op = typeof req.op === 'string' ? req.op : 'unknown';
      // Who may call (common/access.ts): refused before anything runs; the caller is the one the subject names.
      const caller = identityFromSubject(m.subject);
      const allowed = caller === undefined ? Errors.badRequest(`The call subject ${m.subject} names no caller.`) : decideAccess(this.opts.access, caller, 'ReplicatedQueue', this.ctx.name, hostOnlyOps.has(req.op));
      if (allowed !== true) throw allowed;
      reply = await this.serve(req);
    } catch (err) {
      const e = asCastellanError(err);
      if (!(err instanceof CastellanError)) this.log.warn('queue host request failed', { error: describeError(err) });
      reply = { ok: false, status: e.status, code: e.code, message: e.message, retryable: e.retryable };
    }
    const result = !reply.ok ? 'error' : op === 'receive' && (reply.messages?.length ?? 0) === 0 ? 'empty' : 'ok';
    this.metrics.hostRequests.inc({ queue: this.spec.name, op: hostOps.has(op) ? op : 'unknown', result });
    if (m.reply === undefined || m.reply === '') return;
    try {
      m.respond(encodeJson(reply));
    } catch (err) {
      // e.g. larger than max_payload: answer with an error the caller can act on instead.
      this.log.error('answering a queue host request failed', { error: describeError(err) });
      m.respond(encodeJson({ ok: false, status: 503, code: 'QUEUE_UNAVAILABLE', message: `The queue host could not send its answer: ${describeError(err)}`, retryable: true } satisfies HostReply));
    }
  }

  private serve(req: HostRequest): Promise<HostReply> | HostReply {
    if (!this.loaded) return this.serveWhileLoading(req);
    switch (req.op) {
      case 'enqueue':
        return this.enqueue(req);
      case 'replicate':
        return this.replicate(req.msg, req.deadline);
      case 'receive':
        return this.receive(req.max, req.visibilityMs);
      case 'delete':
        return this.deleteLocal(req.id).then((deleted) => ({ ok: true, deleted }));
      case 'visibility':
        return this.changeVisibility(req.id, req.receiveCount, req.visibilityMs);
      case 'state':
        return this.storeStates([req]);
      case 'states':
        return this.storeStates(req.items);
      case 'stats':
        return { ok: true, stats: this.stats(Date.now()) };
      case 'purge':
        return this.purge(req.before).then((purged) => ({ ok: true, purged }));
      default:
        throw Errors.badRequest(`Unknown queue host operation.`);
    }
  }

  /** Before the index is loaded: deletes, purges and state updates are kept durably for later; the rest waits. */
  private async serveWhileLoading(req: HostRequest): Promise<HostReply> {
    switch (req.op) {
      case 'delete':
        await this.client.tomb(this.ctx, this.self, req.id, { kind: 'delete', id: req.id, ts: Date.now() });
        return { ok: true, deleted: true };
      case 'purge':
        await this.client.tomb(this.ctx, this.self, 'purge', { kind: 'purge', before: req.before, ts: Date.now() });
        return { ok: true, purged: 0 };
      case 'state':
      case 'states': {
        const items = req.op === 'state' ? [req] : req.items;
        // Stored in the host stream: the load (still reading) or the next start picks them up.
        await Promise.all(items.map((s) => this.ctx.store.putState(this.self, s.id, { receiveCount: s.receiveCount, invisibleUntil: s.invisibleUntil, ...(s.replicas === undefined ? {} : { replicas: s.replicas }) })));
        return { ok: true };
      }
      case 'receive':
        return { ok: true, messages: [] };
      default:
        throw Errors.unavailable(`Queue host ${this.self} is still loading its replicas.`, 'QUEUE_HOST_UNAVAILABLE');
    }
  }

  private requireLease(): void {
    if (!this.started || !this.heartbeat.leaseValid() || !this.takeovers.isBorn(this.self, this.session)) {
      throw Errors.unavailable(`Queue host ${this.self} is not serving right now (lease renewing).`, 'QUEUE_HOST_UNAVAILABLE');
    }
  }

  private async enqueue(req: Extract<HostRequest, { op: 'enqueue' }>): Promise<HostReply> {
    this.requireLease();
    const live = this.ctx.view.live();
    if (!live.includes(this.self)) live.push(this.self);
    if (req.replicas > live.length) {
      throw Errors.unavailable(`replicas is ${req.replicas} but only ${live.length} host(s) of queue "${this.spec.name}" are live.`, 'NOT_ENOUGH_HOSTS');
    }
    if (req.messageId !== undefined) {
      const have = this.copies.slotOf(req.messageId);
      if (have >= 0) return { ok: true, messageId: req.messageId, replicas: this.copies.groupOf(have).replicas };
    }
    let dedup: { subject: string; seq: number; ts: number } | undefined;
    if (req.dedupId !== undefined) {
      const d = await this.dedupBegin(req.dedupId);
      if ('duplicate' in d) return { ok: true, messageId: d.duplicate.messageId, replicas: d.duplicate.replicas };
      dedup = d;
    }
    try {
      const r = await this.store(req);
      if (dedup !== undefined) {
        const marker: DedupMarker = { state: 'done', ts: dedup.ts, messageId: r.messageId, replicas: r.replicas };
        await this.ctx.store
          .cas(dedup.subject, marker, dedup.seq, Math.max(1_000, dedup.ts + LIMITS.dedupWindowMs - Date.now()))
          .catch((err: unknown) => this.log.warn('writing the dedup marker failed; a resend may be stored twice', { error: describeError(err) }));
      }
      return { ok: true, messageId: r.messageId, replicas: r.replicas };
    } catch (err) {
      if (dedup !== undefined) await this.ctx.store.purgeMeta(dedup.subject).catch(() => undefined);
      throw err;
    }
  }

  /** Claims the dedup id (pending marker), or returns the earlier send's result. */
  private async dedupBegin(dedupId: string): Promise<{ subject: string; seq: number; ts: number } | { duplicate: { messageId: string; replicas: string[] } }> {
    const subject = this.ctx.names.dedup(dedupId);
    const deadline = Date.now() + 5_000;
    for (;;) {
      const cur = await this.ctx.store.last<DedupMarker>(subject);
      const now = Date.now();
      const d = dedupDecision(cur?.record, now);
      if (d.action === 'duplicate') return { duplicate: { messageId: d.messageId, replicas: d.replicas } };
      if (d.action === 'new') {
        const marker: DedupMarker = { state: 'pending', ts: now };
        const r = await this.ctx.store.cas(subject, marker, cur?.seq ?? 0, LIMITS.dedupWindowMs);
        if (r !== CONFLICT) return { subject, seq: r, ts: now };
      }
      if (Date.now() > deadline) throw Errors.unavailable('Another send with the same deduplicationId is still in progress.', 'DEDUPLICATION_IN_PROGRESS');
      await sleep(50);
    }
  }

  /**
   * Stores the primary replica here and R−1 standbys elsewhere; resolves once
   * all R are durable and carry the same replica list.
   */
  private async store(req: Extract<HostRequest, { op: 'enqueue' }>): Promise<{ messageId: string; replicas: string[] }> {
    const now = Date.now();
    const id = req.messageId ?? randomUUID();
    const live = this.ctx.view.live().filter((p) => p !== this.self);
    const want = req.replicas - 1;
    const first = pickTargets(live, new Set(), want, this.rr++);
    if (first.length < want) {
      throw Errors.unavailable(`replicas is ${req.replicas} but only ${first.length + 1} host(s) of queue "${this.spec.name}" are live.`, 'NOT_ENOUGH_HOSTS');
    }
    const msg: StoredMessage = {
      id,
      body: req.body,
      attributes: req.attributes,
      enqueuedAt: req.enqueuedAt ?? now,
      visibleAt: now + req.delayMs,
      primary: this.self,
      ps: this.session,
      replicas: [this.self, ...first],
    };
    // Large copies get longer per attempt (1 s per 256 KiB on top): writing them takes longer.
    const wireSize = encodedSize(msg.body, msg.attributes);
    const started = performance.now();
    const deadline = started + REPLICATE_DEADLINE_MS;
    const wallDeadline = Date.now() + REPLICATE_DEADLINE_MS;
    const tried = new Set<string>([this.self, ...first]);
    /** Slot i (a standby position) → the host that stored it. */
    const slots: (string | undefined)[] = first.map(() => undefined);
    const failed: string[] = [];
    const replicateSlot = async (slot: number): Promise<void> => {
      let pod: string | undefined = first[slot];
      while (pod !== undefined) {
        const t0 = performance.now();
        try {
          // Short per-attempt timeout: a peer killed while storing must not hold up the send
          // (the sidecar gives the whole enqueue 10 s before it tries another host).
          const left = deadline - performance.now();
          if (left < 100) break;
          const list = [this.self, ...first.map((p, i) => (i === slot ? (pod as string) : (slots[i] ?? p)))];
          await this.client.rpc(this.ctx, pod, { op: 'replicate', msg: { ...msg, replicas: list }, deadline: wallDeadline }, Math.min(left, Math.max(2_000, 2 * this.opts.ttlMs) + Math.ceil(wireSize / 262_144) * 1_000));
          this.metrics.replication.observe({ queue: this.spec.name }, (performance.now() - t0) / 1000);
          slots[slot] = pod;
          return;
        } catch (err) {
          this.metrics.replicationFailures.inc({ queue: this.spec.name });
          this.log.info('replication failed; trying another host', { id, host: pod, error: describeError(err) });
          failed.push(pod);
          pod = pickTargets(this.ctx.view.live(), tried, 1, this.rr++)[0];
          if (pod !== undefined) tried.add(pod);
        }
      }
      throw Errors.unavailable(`Could not store ${req.replicas} replicas of the message: not enough live queue hosts accepted it.`, 'NOT_ENOUGH_HOSTS');
    };
    const results = await Promise.allSettled([this.ctx.store.putMessage(this.self, msg), ...first.map((_, i) => replicateSlot(i))]);
    const stored = slots.filter((p): p is string => p !== undefined);
    if (failed.length > 0) {
      // A failed replication may still have stored its copy (late): make sure it is removed.
      await Promise.allSettled(failed.map((p) => this.client.tomb(this.ctx, p, id, { kind: 'delete', id, ts: Date.now() })));
    }
    const failure = results.find((r) => r.status === 'rejected');
    const replicas = [this.self, ...stored];
    const cleanUp = async () => {
      await this.client.deleteReplicas(this.ctx, id, [this.self, ...stored]).catch((err: unknown) => this.log.warn('removing the copies of a failed send failed', { id, error: describeError(err) }));
      this.deadIds.set(id, Date.now());
    };
    if (failure !== undefined) {
      await cleanUp();
      const reason = (failure as PromiseRejectedResult).reason as unknown;
      throw reason instanceof CastellanError ? reason : Errors.unavailable(`Storing the message failed: ${describeError(reason)}`, 'QUEUE_UNAVAILABLE', reason);
    }
    if (failed.length > 0) {
      // Copies were written with lists that named a failed host: give every copy the final list.
      const update: StateUpdate = { id, receiveCount: 0, invisibleUntil: 0, replicas };
      try {
        await Promise.all([this.ctx.store.putState(this.self, id, update), ...stored.map((p) => this.client.rpc(this.ctx, p, { op: 'states', items: [update] }, Math.max(2_000, 2 * this.opts.ttlMs)))]);
      } catch (err) {
        await cleanUp();
        throw Errors.unavailable(`Could not give every replica the same replica list: ${describeError(err)}`, 'QUEUE_UNAVAILABLE', err);
      }
    }
    if (msg.enqueuedAt <= this.purgedBefore) {
      // A purge ran while this send was storing its copies: it is gone with the rest.
      await cleanUp();
      return { messageId: id, replicas };
    }
    if (!this.copies.has(id)) this.addCopy(msg, wireSize, replicas);
    this.metrics.sent.inc({ queue: this.spec.name });
    if (req.delayMs === 0) this.wake();
    return { messageId: id, replicas };
  }

  private isDead(id: string, enqueuedAt: number): boolean {
    const at = this.deadIds.get(id);
    return (at !== undefined && Date.now() - at < DEAD_ID_MS) || enqueuedAt <= this.purgedBefore;
  }

  private async replicate(msg: StoredMessage, deadline: number | undefined): Promise<HostReply> {
    if (!this.started) throw Errors.unavailable(`Queue host ${this.self} is still starting.`, 'QUEUE_HOST_UNAVAILABLE');
    if (this.copies.has(msg.id)) return { ok: true };
    if (deadline !== undefined && Date.now() > deadline) throw Errors.unavailable('The replication request came too late; the primary gave up on it.', 'QUEUE_HOST_UNAVAILABLE');
    if (this.isDead(msg.id, msg.enqueuedAt)) throw Errors.conflict('The message was deleted or purged before this copy arrived.', 'MESSAGE_DELETED');
    await this.ctx.store.putMessage(this.self, msg);
    if (this.isDead(msg.id, msg.enqueuedAt) || (deadline !== undefined && Date.now() > deadline + REPLICATE_DEADLINE_MS)) {
      // Deleted while the copy was being written: remove it again.
      await this.ctx.store.deleteMessage(this.self, msg.id);
      throw Errors.conflict('The message was deleted or purged while this copy was stored.', 'MESSAGE_DELETED');
    }
    if (!this.copies.has(msg.id)) this.addCopy(msg, encodedSize(msg.body, msg.attributes));
    return { ok: true };
  }

  /** Receive counts, invisibility and replica lists from the holder: in memory and in the host stream. */
  private async storeStates(items: StateUpdate[]): Promise<HostReply> {
    await Promise.all(
      items.map(async (s) => {
        const slot = this.copies.slotOf(s.id);
        if (slot < 0) return;
        this.applyState(slot, s);
        const c = this.copies;
        await this.ctx.store.putState(this.self, s.id, { receiveCount: c.receiveCount(slot), invisibleUntil: c.invisibleUntil(slot), replicas: c.groupOf(slot).replicas });
      }),
    );
    return { ok: true };
  }

  /**
   * Whether a slot taken from the ready list can be delivered now. Stale
   * entries and copies that are not deliverable any more leave the list here
   * (they are queued again when their state changes).
   */
  private takeReady(slot: number, now: number): boolean {
    const c = this.copies;
    if (!c.live(slot) || c.queued(slot) !== IN_READY) return false;
    if (!this.isHeld(slot) || c.flag(slot, MOVING) || this.expiredOrPurged(slot, now)) {
      c.setQueued(slot, NOT_QUEUED);
      return false;
    }
    if (this.dueOf(slot) > now) {
      this.queueSlot(slot, now);
      return false;
    }
    // Moved, never delivered again; while the move is failing the message waits in this queue.
    if (this.deadLetterDue(slot)) return false;
    c.setQueued(slot, NOT_QUEUED); // taken: the caller delivers it or puts it back
    return true;
  }

  private async receive(max: number, visibilityMs: number): Promise<HostReply> {
    if (!this.started || !this.heartbeat.leaseValid() || !this.takeovers.isBorn(this.self, this.session)) return { ok: true, messages: [] };
    const now = Date.now();
    const c = this.copies;
    this.syncHeld(now);
    this.drainDue(now);
    const budget = Math.max(64 * 1024, (this.nc.info?.max_payload ?? 1024 * 1024) - REPLY_HEADROOM);
    const candidates: number[] = [];
    while (candidates.length < max) {
      const slot = this.readyList.shift();
      if (slot < 0) break;
      if (this.takeReady(slot, now)) candidates.push(slot);
    }
    const n = fitReply(
      candidates.map((slot) => c.replySize(slot)),
      budget,
      max,
    );
    // What did not fit goes back in front, in order.
    for (let i = candidates.length - 1; i >= n; i--) {
      c.setQueued(candidates[i] as number, IN_READY);
      this.readyList.unshift(candidates[i] as number);
    }
    const more = n < candidates.length || (candidates.length >= max && this.readyList.length > 0);
    const picked: (StateUpdate & { enqueuedAt: number; replicas: string[] })[] = [];
    for (let i = 0; i < n; i++) {
      const slot = candidates[i] as number;
      const receiveCount = c.receiveCount(slot) + 1;
      const invisibleUntil = now + visibilityMs;
      c.setReceive(slot, receiveCount, invisibleUntil);
      this.queueSlot(slot, now);
      picked.push({ id: c.id(slot), receiveCount, invisibleUntil, enqueuedAt: c.enqueuedAt(slot), replicas: c.groupOf(slot).replicas });
    }
    // The new state is stored here and on every standby before the answer, so a failover
    // continues from it (receive count toward the dead-letter queue, invisibility).
    const [bodies] = await Promise.all([Promise.all(picked.map((m) => this.ctx.store.getMessage(this.self, m.id).catch(() => undefined))), this.persistStates(picked)]);
    const out: ReceivedMessage[] = [];
    picked.forEach((m, i) => {
      const b = bodies[i];
      if (b === undefined) return; // deleted meanwhile
      this.metrics.received.inc({ queue: this.spec.name });
      if (m.receiveCount > 1) this.metrics.redelivered.inc({ queue: this.spec.name });
      out.push({ messageId: m.id, body: b.body, attributes: b.attributes, receiveCount: m.receiveCount, enqueuedAt: m.enqueuedAt, replicas: m.replicas, holder: this.self });
    });
    return { ok: true, messages: out, more };
  }

  /** Stores the receive state of `msgs` here and on their standbys (one request per standby). */
  private async persistStates(msgs: (StateUpdate & { replicas: string[] })[]): Promise<void> {
    if (msgs.length === 0) return;
    const perHost = new Map<string, StateUpdate[]>();
    const local: Promise<void>[] = [];
    for (const m of msgs) {
      const u: StateUpdate = { id: m.id, receiveCount: m.receiveCount, invisibleUntil: m.invisibleUntil, replicas: m.replicas };
      local.push(
        this.ctx.store
          .putState(this.self, m.id, u)
          .catch((err: unknown) => {
            this.log.warn('persisting a receive failed; the receive count may restart lower after a crash', { id: m.id, error: describeError(err) });
          }),
      );
      for (const p of m.replicas) {
        if (p === this.self) continue;
        let l = perHost.get(p);
        if (l === undefined) perHost.set(p, (l = []));
        l.push(u);
      }
    }
    const remote = [...perHost].map(async ([pod, items]) => {
      if (!this.ctx.view.isReachable(pod)) return;
      try {
        await this.client.rpc(this.ctx, pod, { op: 'states', items }, Math.max(1_000, this.opts.ttlMs));
      } catch (err) {
        this.log.info('a standby did not take the receive state; a failover may deliver with a lower receive count', { host: pod, error: describeError(err) });
      }
    });
    await Promise.all([...local, ...remote]);
  }

  /** Moves the copy in `slot` to the dead-letter queue (same id, first-enqueue time, replica count); on failure it waits and is retried. */
  private async deadLetter(slot: number): Promise<void> {
    const dl = this.spec.deadLetter;
    const c = this.copies;
    if (dl === undefined || c.flag(slot, MOVING)) return;
    c.setFlag(slot, MOVING, true);
    // The slot may be reused once the copy is gone: after an await, the copy is found by id again.
    const id = c.id(slot);
    const replicas = c.groupOf(slot).replicas;
    const enqueuedAt = c.enqueuedAt(slot);
    const receiveCount = c.receiveCount(slot);
    try {
      const stored = await this.ctx.store.getMessage(this.self, id);
      if (stored !== undefined) {
        const target = await this.client.queue(dl.queue);
        // Same id, first-enqueue time and replica count (as far as the dead-letter queue has hosts);
        // the dedup id makes a retried move store it once.
        await this.client.sendTo(target, {
          body: stored.body,
          attributes: stored.attributes,
          replicas: Math.max(1, Math.min(replicas.length, target.spec.hosts, target.view.live().length || 1)),
          deduplicationId: `castellan-dead-letter:${id}`,
          messageId: id,
          enqueuedAt,
        });
      }
      await this.client.deleteReplicas(this.ctx, id, [this.self, ...replicas]);
      this.metrics.deadLettered.inc({ queue: this.spec.name });
      this.log.info('moved a message to the dead-letter queue', { id, deadLetterQueue: dl.queue, receiveCount });
    } catch (err) {
      const now = Date.now();
      const at = c.slotOf(id);
      if (at >= 0) c.setFlag(at, MOVING, false);
      if (err instanceof CastellanError && !err.retryable && err.status >= 400 && err.status < 500) {
        // Waiting would not help (the dead-letter queue will never take it): keep delivering it here.
        if (at >= 0) {
          c.setFlag(at, DL_REFUSED, true);
          this.requeue(at, now);
        }
        this.log.error('the dead-letter queue refuses this message for good; it stays in this queue and is delivered as usual', { id, deadLetterQueue: dl.queue, error: describeError(err) });
        return;
      }
      this.log.warn('moving a message to the dead-letter queue failed; it stays here and is retried', { id, deadLetterQueue: dl.queue, error: describeError(err) });
      if (at >= 0) {
        this.moveRetryAt.set(at, now + MOVE_RETRY_MS);
        this.requeue(at, now);
      }
    }
  }

  private async deleteLocal(id: string): Promise<boolean> {
    if (!this.copies.has(id)) {
      // Its copy may still be on its way (a late replication): refuse it when it comes.
      this.deadIds.set(id, Date.now());
      return false;
    }
    await this.ctx.store.deleteMessage(this.self, id);
    // Looked up again: the slot may have changed hands while the purge was awaited.
    const slot = this.copies.slotOf(id);
    if (slot >= 0) {
      this.removeCopy(slot);
      this.metrics.deleted.inc({ queue: this.spec.name });
    }
    return true;
  }

  private async changeVisibility(id: string, receiveCount: number, visibilityMs: number): Promise<HostReply> {
    this.requireLease();
    const c = this.copies;
    const slot = c.slotOf(id);
    if (slot < 0) throw Errors.notFound('The message of this receipt handle no longer exists (deleted, expired or moved).', 'MESSAGE_NOT_FOUND');
    const now = Date.now();
    if (!this.isHeld(slot) || !(now >= c.visibleAt(slot) && now < c.invisibleUntil(slot))) {
      throw Errors.conflict('The message is not in flight under this receipt handle (its visibility timeout ran out or it moved).', 'MESSAGE_NOT_IN_FLIGHT');
    }
    if (c.receiveCount(slot) !== receiveCount) {
      throw Errors.badRequest('The receipt handle is stale: the message was received again since.', 'RECEIPT_HANDLE_EXPIRED');
    }
    const invisibleUntil = now + visibilityMs;
    c.setReceive(slot, receiveCount, invisibleUntil);
    this.requeue(slot, now);
    await this.persistStates([{ id, receiveCount, invisibleUntil, replicas: c.groupOf(slot).replicas }]);
    if (visibilityMs === 0) this.wake();
    return { ok: true };
  }

  /**
   * Depth of what this session holds, and the expired copies to drop: one pass
   * over the typed arrays, every tick for small indexes and every
   * FULL_PASS_MS for large ones (the counts are approximate, as SQS's).
   */
  private fullPass(now: number): { stats: HostStats; old: string[] } {
    const c = this.copies;
    this.syncHeld(now);
    const s: HostStats = { visible: 0, inFlight: 0, delayed: 0, stored: c.size };
    const old: string[] = [];
    const retention = this.spec.messageRetentionMs;
    for (let slot = 0; slot < c.end; slot++) {
      if (!c.live(slot)) continue;
      const enq = c.enqueuedAt(slot);
      if (now >= enq + retention) {
        old.push(c.id(slot));
        continue;
      }
      if (enq <= this.purgedBefore || !this.heldGroup(c.gid(slot))) continue;
      if (now < c.visibleAt(slot)) s.delayed++;
      else if (now < c.invisibleUntil(slot)) s.inFlight++;
      else s.visible++;
      if (s.oldestEnqueuedAt === undefined || enq < s.oldestEnqueuedAt) s.oldestEnqueuedAt = enq;
    }
    this.lastStats = s;
    this.lastStatsAt = now;
    return { stats: s, old };
  }

  private stats(now: number): HostStats {
    if (this.copies.size < FULL_PASS_EVERY_TICK || now - this.lastStatsAt >= FULL_PASS_MS) return this.fullPass(now).stats;
    return { ...this.lastStats, stored: this.copies.size };
  }

  /** Everything enqueued up to `before` goes: the mark first (durable), so no copy of it is accepted or served again. */
  private async purge(before: number): Promise<number> {
    if (before > this.purgedBefore) {
      await this.ctx.store.putPurgeMark(this.self, before);
      this.purgedBefore = before;
    }
    return this.dropPurged();
  }

  private async dropPurged(): Promise<number> {
    const ids: string[] = [];
    const c = this.copies;
    for (let slot = 0; slot < c.end; slot++) if (c.live(slot) && c.enqueuedAt(slot) <= this.purgedBefore) ids.push(c.id(slot));
    await forEachLimit(ids, 32, async (id) => {
      await this.deleteLocal(id);
    });
    return ids.length;
  }

  // ---- background: tombstones, takeovers, retention, wake-ups ----

  private wake(): void {
    // The payload names this host: callers try hosts that just announced messages first.
    this.nc.publish(this.ctx.names.wake, new TextEncoder().encode(this.self));
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      await new Promise<void>((resolve) => {
        this.wakeLoop = resolve;
        setTimeout(resolve, Math.max(100, Math.min(500, this.opts.ttlMs / 4))).unref();
      });
      if (this.stopped) break;
      try {
        await this.tick();
      } catch (err) {
        this.log.warn('queue host background pass failed', { error: describeError(err) });
      }
    }
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    await this.applyTombs();
    const version = this.takeovers.version;
    await this.readLog();
    await this.retirePeers();
    if (!this.takeovers.isBorn(this.self, this.session) && this.heartbeat.leaseValid()) await this.writeRecord('birth', this.self, this.session, true);
    // Messages this host took over (or that came back to it) are announced to waiting receivers.
    if (this.takeovers.version !== version) this.wake();
    for (const [id, at] of this.deadIds) if (now - at >= DEAD_ID_MS) this.deadIds.delete(id);
    // Wake-ups for messages that became visible since the last pass; retention and depth.
    this.syncHeld(now);
    const becameVisible = this.drainDue(now);
    if (this.copies.size < FULL_PASS_EVERY_TICK || now - this.lastFullPass >= FULL_PASS_MS) {
      this.lastFullPass = now;
      const { stats: s, old } = this.fullPass(now);
      if (old.length > 0) {
        await forEachLimit(old, 16, async (id) => {
          await this.deleteLocal(id);
        });
        this.log.info('dropped messages past their retention', { count: old.length });
      }
      const q = this.spec.name;
      this.metrics.depth.set({ queue: q, state: 'visible' }, s.visible);
      this.metrics.depth.set({ queue: q, state: 'in_flight' }, s.inFlight);
      this.metrics.depth.set({ queue: q, state: 'delayed' }, s.delayed);
      this.metrics.stored.set({ queue: q }, this.copies.size);
      this.metrics.indexBytes.set({ queue: q }, this.copies.bytes);
      this.metrics.oldestAge.set({ queue: q }, s.oldestEnqueuedAt === undefined ? 0 : (now - s.oldestEnqueuedAt) / 1000);
    }
    if (becameVisible) this.wake();
  }

  /** Applies every pending delete/purge kept for this host (paged: any number of them), then removes each. */
  private async applyTombs(): Promise<void> {
    const tombs = await this.ctx.store.list<Tombstone>(this.ctx.names.tombs(this.self));
    if (tombs.length === 0) return;
    let purgeBefore = 0;
    await forEachLimit(tombs, 32, async (t) => {
      if (t.record.kind === 'delete') await this.deleteLocal(t.record.id);
      else purgeBefore = Math.max(purgeBefore, t.record.before);
    });
    if (purgeBefore > 0) await this.purge(purgeBefore);
    await forEachLimit(tombs, 32, async (t) => {
      await this.ctx.store.purgeMeta(t.subject);
    });
    this.log.info('applied pending deletes and purges kept while this host was away', { count: tombs.length });
  }

  /** Reads the takeover log from where this host left off (paged: any number of records). */
  private async readLog(): Promise<void> {
    await this.ctx.store.scan(
      this.ctx.names.metaStream,
      this.ctx.names.takeovers,
      (m) => {
        this.takeovers.add(m.seq, decodeJson<TakeoverRecord>(m.data));
      },
      this.takeovers.lastSeq + 1,
    );
  }

  /** The sessions live now, as this host sees them (pod → session), without `except`. */
  private aliveNow(except: { pod: string; session: string } | undefined, includeSelf: boolean): Record<string, string> {
    const alive: Record<string, string> = {};
    for (const pod of this.ctx.view.live()) {
      if (pod === this.self) continue;
      const h = this.ctx.view.host(pod);
      if (h === undefined) continue;
      const session = h.record.sessionId;
      if ((except !== undefined && pod === except.pod && session === except.session) || this.takeovers.isDead(pod, session)) continue;
      alive[pod] = session;
    }
    if (includeSelf && !this.takeovers.isDead(this.self, this.session)) alive[this.self] = this.session;
    return alive;
  }

  /** Writes a takeover-log record once (compare-and-set on its empty subject; a conflict means another host wrote it). */
  private async writeRecord(kind: TakeoverKind, pod: string, session: string, includeSelf: boolean): Promise<void> {
    const record: TakeoverRecord = { kind, pod, session, alive: this.aliveNow(kind === 'death' ? { pod, session } : undefined, includeSelf), ts: Date.now() };
    const ttl = this.spec.messageRetentionMs + 3_600_000;
    const r = await this.ctx.store.cas(this.ctx.names.takeover(pod, session, kind), record, 0, ttl);
    if (r !== CONFLICT) {
      if (kind === 'death' && pod !== this.self) this.metrics.promoted.inc({ queue: this.spec.name });
      this.log.info(kind === 'death' ? 'took over a dead queue host session (one record for all its messages)' : 'queue host session announced', { host: pod, session, alive: record.alive });
    }
    await this.readLog();
  }

  /**
   * Before this session serves: every earlier session of this pod is dead
   * (this process replaced it), once its lease certainly ended. The last one
   * may still have been heartbeating just before the restart: fence it
   * after TTL + margin without a newer heartbeat (lease.ts rule 2).
   */
  private async retireOwnSessions(prev: { seq: number; record: HostRecord } | undefined, readAt: number): Promise<void> {
    const timing = this.ctx.view.timing;
    let cur = prev;
    let since = readAt;
    while (cur !== undefined && cur.record.sessionId !== this.session && (cur.record.kind === 'alive' || cur.record.kind === 'draining')) {
      const wait = since + timing.ttl + timing.margin - performance.now();
      if (wait > 0) await sleep(wait);
      const r = await this.ctx.store.cas(this.ctx.names.host(this.self), { kind: 'fenced', pod: this.self, sessionId: cur.record.sessionId, ts: Date.now(), by: this.self } satisfies HostRecord, cur.seq);
      if (r !== CONFLICT) break;
      cur = await this.ctx.store.last<HostRecord>(this.ctx.names.host(this.self));
      since = performance.now();
    }
    const old = new Set<string>();
    if (cur !== undefined) {
      old.add(cur.record.sessionId);
      if (cur.record.prevSessionId !== undefined) old.add(cur.record.prevSessionId);
    }
    for (const r of this.takeovers.recordsOf(this.self)) old.add(r);
    old.delete(this.session);
    for (const session of old) if (!this.takeovers.isDead(this.self, session)) await this.writeRecord('death', this.self, session, true);
  }

  /** Fences peers that went silent, and writes the death record of every peer session that is certainly dead. */
  private async retirePeers(): Promise<void> {
    const view = this.ctx.view;
    for (const pod of view.known()) {
      if (pod === this.self) continue;
      const h = view.host(pod);
      if (h === undefined) continue;
      const rec = h.record;
      const st = view.status(pod);
      if (st === 'expired' && (rec.kind === 'alive' || rec.kind === 'draining')) {
        const ok = await view.fence(pod, this.self).catch((err: unknown) => {
          this.log.warn('fencing a silent queue host failed', { host: pod, error: describeError(err) });
          return false;
        });
        this.log.info(ok ? 'fenced a queue host whose lease expired' : 'queue host renewed its lease; not fenced', { host: pod });
        if (!ok) continue;
        if (!this.takeovers.isDead(pod, rec.sessionId)) await this.writeRecord('death', pod, rec.sessionId, this.heartbeat.leaseValid());
        continue;
      }
      const dead: string[] = [];
      if (rec.kind === 'fenced' || rec.kind === 'leave') dead.push(rec.sessionId);
      for (const s of h.deadSessions) dead.push(s);
      for (const session of dead) if (!this.takeovers.isDead(pod, session)) await this.writeRecord('death', pod, session, this.heartbeat.leaseValid());
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeLoop?.();
    await this.loopDone;
    await this.sub?.drain().catch(() => undefined);
    if (this.started) {
      // Not serving any more: hand every message over now (one record) rather than when the lease runs out.
      await this.writeRecord('death', this.self, this.session, false).catch((err: unknown) => this.log.warn('handing the messages over at stop failed; peers take them over when the lease ends', { error: describeError(err) }));
    }
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error after all settle. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let firstError: unknown;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (firstError !== undefined) throw firstError instanceof Error ? firstError : new Error(String(firstError));
}
