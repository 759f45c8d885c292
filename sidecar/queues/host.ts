/**
 * A queue host (role `queue-host`): stores replicas of its queue's messages
 * in its own host stream, keeps an in-memory index of them (rebuilt from the
 * stream at start), and answers the RPCs of sidecars and peer hosts.
 *
 * - enqueue: stores the initial replica and, in parallel, sends replication
 *   requests to R−1 other live hosts; a failed one is retried on another host
 *   (and the failed host gets a tombstone, in case it stored the copy). The
 *   reply names R distinct hosts, each of which acknowledged a durable write.
 * - One visible copy: the holder (the primary, or the host named by the
 *   message's promotion claim) delivers it; standbys keep theirs hidden. The
 *   holder sends each receive's state to the standbys (fire and forget).
 * - Promotion: every tick, for messages whose holder is not live, the first
 *   live replica after it fences the holder's lease and claims the message by
 *   compare-and-set on its claim record, so exactly one standby promotes it.
 * - Tombstones (deletes/purges kept for this host while it was down) are
 *   applied at start, before serving, and then every tick.
 */
import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { asCastellanError, CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { QueueClient, QueueCtx, Tombstone } from './client.ts';
import { dedupDecision, decidePromotion, expired, holderOf, pickTargets, shouldDeadLetter, visibilityOf, type DedupMarker } from './logic.ts';
import type { HostHeartbeat } from '../leases/heartbeat.ts';
import type { QueueMetrics } from './metrics.ts';
import { LIMITS } from './spec.ts';
import { CONFLICT, type StoredMessage } from './store.ts';
import { decodeJson, encodeJson, type HostReply, type HostRequest, type HostStats, type ReceivedMessage } from './wire.ts';

export interface HostMsg extends StoredMessage {
  receiveCount: number;
  invisibleUntil: number;
  /** Being moved to the dead-letter queue. */
  moving?: boolean;
  /** After a failed move, not retried before this (wall ms). */
  moveRetryAt?: number;
}

interface ClaimRecord {
  holder: string;
  ts: number;
}

export interface QueueHostOptions {
  pod: string;
  ttlMs: number;
  requestTimeoutMs: number;
}

export class QueueHost {
  private readonly nc: NatsConnection;
  private readonly ctx: QueueCtx;
  private readonly client: QueueClient;
  private readonly heartbeat: HostHeartbeat;
  private readonly metrics: QueueMetrics;
  private readonly opts: QueueHostOptions;
  private readonly log: Logger;
  readonly msgs = new Map<string, HostMsg>();
  private readonly claims = new Map<string, string>();
  private sub: Subscription | undefined;
  private started = false;
  private stopped = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeLoop: (() => void) | undefined;
  private lastTick = Date.now();
  private lastClaimsRefresh = 0;
  private claimsStale = true;
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

  /** Called by the heartbeat when another host fenced this session: re-read claims before trusting holder status. */
  onFenced(): void {
    this.claimsStale = true;
  }

  async start(): Promise<void> {
    const loaded = await this.ctx.store.loadAll(this.self);
    for (const { msg, state } of loaded.values()) {
      this.msgs.set(msg.id, { ...msg, replicas: state?.replicas ?? msg.replicas, receiveCount: state?.receiveCount ?? 0, invisibleUntil: state?.invisibleUntil ?? 0 });
    }
    this.log.info('queue host index rebuilt from JetStream', { replicas: this.msgs.size });
    await this.applyTombs();
    await this.refreshClaims();
    this.sub = this.nc.subscribe(this.ctx.names.rpc(this.self), { callback: (err, m) => (err === null ? void this.handle(m) : undefined) });
    await this.nc.flush();
    this.started = true;
    this.loopDone = this.loop();
  }

  ready(): true | string {
    if (!this.started) return 'queue host still loading its replicas';
    if (!this.heartbeat.leaseValid()) return 'queue host lease not valid';
    return true;
  }

  // ---- RPC ----

  private async handle(m: Msg): Promise<void> {
    let reply: HostReply;
    try {
      const req = decodeJson<HostRequest>(m.data);
      reply = await this.serve(req);
    } catch (err) {
      const e = asCastellanError(err);
      if (!(err instanceof CastellanError)) this.log.warn('queue host request failed', { error: describeError(err) });
      reply = { ok: false, status: e.status, code: e.code, message: e.message, retryable: e.retryable };
    }
    if (m.reply !== undefined && m.reply !== '') m.respond(encodeJson(reply));
  }

  private serve(req: HostRequest): Promise<HostReply> | HostReply {
    switch (req.op) {
      case 'enqueue':
        return this.enqueue(req);
      case 'replicate':
        return this.replicate(req.msg);
      case 'receive':
        return this.receive(req.max, req.visibilityMs);
      case 'delete':
        return this.deleteLocal(req.id).then((deleted) => ({ ok: true, deleted }));
      case 'visibility':
        return this.changeVisibility(req.id, req.receiveCount, req.visibilityMs);
      case 'state': {
        const m = this.msgs.get(req.id);
        if (m !== undefined) {
          m.receiveCount = Math.max(m.receiveCount, req.receiveCount);
          m.invisibleUntil = req.invisibleUntil;
          if (req.replicas !== undefined) m.replicas = req.replicas;
        }
        return { ok: true };
      }
      case 'stats':
        return { ok: true, stats: this.stats(Date.now()) };
      case 'purge':
        return this.purge(req.before).then((purged) => ({ ok: true, purged }));
      default:
        throw Errors.badRequest(`Unknown queue host operation.`);
    }
  }

  private requireLease(): void {
    if (!this.started || !this.heartbeat.leaseValid() || this.claimsStale) {
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

  /** Stores the primary replica here and R−1 standbys elsewhere; resolves once all R are durable. */
  private async store(req: Extract<HostRequest, { op: 'enqueue' }>): Promise<{ messageId: string; replicas: string[] }> {
    const now = Date.now();
    const id = randomUUID();
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
      enqueuedAt: now,
      visibleAt: now + req.delayMs,
      primary: this.self,
      replicas: [this.self, ...first],
    };
    const deadline = performance.now() + 8_000;
    const tried = new Set<string>([this.self, ...first]);
    const stored: string[] = [];
    const failed: string[] = [];
    const replicateOne = async (target: string): Promise<void> => {
      let pod: string | undefined = target;
      while (pod !== undefined) {
        const started = performance.now();
        try {
          // Short per-attempt timeout: a peer killed while storing must not hold up the send
          // (the sidecar gives the whole enqueue 10 s before it tries another host).
          const left = deadline - performance.now();
          if (left < 100) break;
          await this.client.rpc(this.ctx, pod, { op: 'replicate', msg: { ...msg, replicas: [this.self, ...first.map((p) => (p === target ? (pod as string) : p))] } }, Math.min(left, Math.max(2_000, 2 * this.opts.ttlMs)));
          this.metrics.replication.observe({ queue: this.spec.name }, (performance.now() - started) / 1000);
          stored.push(pod);
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
    const results = await Promise.allSettled([this.ctx.store.putMessage(this.self, msg), ...first.map(replicateOne)]);
    const failure = results.find((r) => r.status === 'rejected');
    if (failed.length > 0) {
      // A failed replication may still have stored its copy: make sure it is removed.
      await Promise.allSettled(failed.map((p) => this.client.tomb(this.ctx, p, id, { kind: 'delete', id, ts: Date.now() })));
    }
    if (failure !== undefined) {
      await this.client.deleteReplicas(this.ctx, id, [this.self, ...stored]).catch(() => undefined);
      const reason = (failure as PromiseRejectedResult).reason as unknown;
      throw reason instanceof CastellanError ? reason : Errors.unavailable(`Storing the message failed: ${describeError(reason)}`, 'QUEUE_UNAVAILABLE', reason);
    }
    const replicas = [this.self, ...first.map((p) => (stored.includes(p) ? p : undefined)).filter((p): p is string => p !== undefined), ...stored.filter((p) => !first.includes(p))];
    const held: HostMsg = { ...msg, replicas, receiveCount: 0, invisibleUntil: 0 };
    this.msgs.set(id, held);
    if (failed.length > 0) {
      await this.ctx.store.putState(this.self, id, { receiveCount: 0, invisibleUntil: 0, replicas }).catch(() => undefined);
      this.tellStandbys(held);
    }
    this.metrics.sent.inc({ queue: this.spec.name });
    if (req.delayMs === 0) this.wake();
    return { messageId: id, replicas };
  }

  private async replicate(msg: StoredMessage): Promise<HostReply> {
    if (!this.started) throw Errors.unavailable(`Queue host ${this.self} is still starting.`, 'QUEUE_HOST_UNAVAILABLE');
    if (!this.msgs.has(msg.id)) {
      await this.ctx.store.putMessage(this.self, msg);
      this.msgs.set(msg.id, { ...msg, receiveCount: 0, invisibleUntil: 0 });
    }
    return { ok: true };
  }

  private async receive(max: number, visibilityMs: number): Promise<HostReply> {
    if (!this.started || !this.heartbeat.leaseValid() || this.claimsStale) return { ok: true, messages: [] };
    const now = Date.now();
    const picked: HostMsg[] = [];
    for (const m of this.msgs.values()) {
      if (picked.length >= max) break;
      if (m.moving === true || holderOf(m, this.claims.get(m.id)) !== this.self) continue;
      if (visibilityOf(m, now) !== 'visible' || expired(m, this.spec.messageRetentionMs, now)) continue;
      if (shouldDeadLetter(m, this.spec.deadLetter)) {
        // Moved, never delivered again; while the move is failing the message waits in this queue.
        void this.deadLetter(m);
        continue;
      }
      m.receiveCount += 1;
      m.invisibleUntil = now + visibilityMs;
      picked.push(m);
    }
    // The receive is persisted without holding up the answer: if the host crashes first, the
    // message is simply delivered again (at-least-once) with a lower receive count.
    for (const m of picked) {
      void this.ctx.store
        .putState(this.self, m.id, { receiveCount: m.receiveCount, invisibleUntil: m.invisibleUntil, replicas: m.replicas })
        .catch((err: unknown) => this.log.warn('persisting a receive failed; the receive count may restart lower after a crash', { id: m.id, error: describeError(err) }));
    }
    const out: ReceivedMessage[] = picked.map((m) => {
      this.tellStandbys(m);
      this.metrics.received.inc({ queue: this.spec.name });
      if (m.receiveCount > 1) this.metrics.redelivered.inc({ queue: this.spec.name });
      return { messageId: m.id, body: m.body, attributes: m.attributes, receiveCount: m.receiveCount, enqueuedAt: m.enqueuedAt, replicas: m.replicas, holder: this.self };
    });
    let more = false;
    if (picked.length >= max) {
      for (const m of this.msgs.values()) {
        if (m.moving !== true && holderOf(m, this.claims.get(m.id)) === this.self && visibilityOf(m, now) === 'visible') {
          more = true;
          break;
        }
      }
    }
    return { ok: true, messages: out, more };
  }

  /** Holder → standbys: the receive count and invisibility, so a promotion continues from them. */
  private tellStandbys(m: HostMsg): void {
    for (const pod of m.replicas) {
      if (pod === this.self) continue;
      const req: HostRequest = { op: 'state', id: m.id, receiveCount: m.receiveCount, invisibleUntil: m.invisibleUntil, replicas: m.replicas };
      this.nc.publish(this.ctx.names.rpc(pod), encodeJson(req));
    }
  }

  private async deadLetter(m: HostMsg): Promise<void> {
    const dl = this.spec.deadLetter;
    if (dl === undefined || (m.moveRetryAt ?? 0) > Date.now()) return;
    m.moving = true;
    try {
      const target = await this.client.queue(dl.queue);
      await this.client.sendTo(target, { body: m.body, attributes: m.attributes, replicas: Math.min(target.spec.replicaCount, target.view.live().length || 1) });
      await this.client.deleteReplicas(this.ctx, m.id, [this.self, ...m.replicas]);
      this.metrics.deadLettered.inc({ queue: this.spec.name });
      this.log.info('moved a message to the dead-letter queue', { id: m.id, deadLetterQueue: dl.queue, receiveCount: m.receiveCount });
    } catch (err) {
      this.log.warn('moving a message to the dead-letter queue failed; it stays here and is retried at its next receive', { id: m.id, deadLetterQueue: dl.queue, error: describeError(err) });
      m.moving = false;
      m.moveRetryAt = Date.now() + 5_000;
    }
  }

  private async deleteLocal(id: string): Promise<boolean> {
    const m = this.msgs.get(id);
    if (m === undefined) return false;
    await this.ctx.store.deleteMessage(this.self, id);
    this.msgs.delete(id);
    this.metrics.deleted.inc({ queue: this.spec.name });
    if (this.claims.has(id)) {
      this.claims.delete(id);
      await this.ctx.store.purgeMeta(this.ctx.names.claim(id)).catch((err: unknown) => this.log.debug('removing a claim failed (it expires anyway)', { id, error: describeError(err) }));
    }
    return true;
  }

  private async changeVisibility(id: string, receiveCount: number, visibilityMs: number): Promise<HostReply> {
    this.requireLease();
    const m = this.msgs.get(id);
    if (m === undefined) throw Errors.notFound('The message of this receipt handle no longer exists (deleted, expired or moved).', 'MESSAGE_NOT_FOUND');
    const now = Date.now();
    if (holderOf(m, this.claims.get(id)) !== this.self || visibilityOf(m, now) !== 'inflight') {
      throw Errors.conflict('The message is not in flight under this receipt handle (its visibility timeout ran out or it moved).', 'MESSAGE_NOT_IN_FLIGHT');
    }
    if (m.receiveCount !== receiveCount) {
      throw Errors.badRequest('The receipt handle is stale: the message was received again since.', 'RECEIPT_HANDLE_EXPIRED');
    }
    m.invisibleUntil = now + visibilityMs;
    await this.ctx.store.putState(this.self, id, { receiveCount: m.receiveCount, invisibleUntil: m.invisibleUntil, replicas: m.replicas });
    this.tellStandbys(m);
    if (visibilityMs === 0) this.wake();
    return { ok: true };
  }

  private stats(now: number): HostStats {
    const s: HostStats = { visible: 0, inFlight: 0, delayed: 0, stored: this.msgs.size };
    for (const m of this.msgs.values()) {
      if (holderOf(m, this.claims.get(m.id)) !== this.self || expired(m, this.spec.messageRetentionMs, now)) continue;
      const v = visibilityOf(m, now);
      if (v === 'visible') s.visible++;
      else if (v === 'inflight') s.inFlight++;
      else s.delayed++;
      if (s.oldestEnqueuedAt === undefined || m.enqueuedAt < s.oldestEnqueuedAt) s.oldestEnqueuedAt = m.enqueuedAt;
    }
    return s;
  }

  private async purge(before: number): Promise<number> {
    const ids = [...this.msgs.values()].filter((m) => m.enqueuedAt <= before).map((m) => m.id);
    await forEachLimit(ids, 32, async (id) => {
      await this.deleteLocal(id);
    });
    return ids.length;
  }

  // ---- background: tombstones, claims, promotion, retention, wake-ups ----

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
    if (this.claimsStale || now - this.lastClaimsRefresh >= Math.max(500, this.opts.ttlMs / 2)) await this.refreshClaims();
    await this.promote();
    // Retention and wake-ups for messages that became visible since the last pass.
    let becameVisible = false;
    const old: string[] = [];
    for (const m of this.msgs.values()) {
      if (expired(m, this.spec.messageRetentionMs, now)) {
        old.push(m.id);
        continue;
      }
      if (holderOf(m, this.claims.get(m.id)) !== this.self) continue;
      const at = Math.max(m.visibleAt, m.invisibleUntil);
      if (at > this.lastTick && at <= now) becameVisible = true;
      // A message that used up its receives moves to the DLQ as soon as it is visible again, not at the next receive.
      if (m.moving !== true && visibilityOf(m, now) === 'visible' && shouldDeadLetter(m, this.spec.deadLetter)) void this.deadLetter(m);
    }
    this.lastTick = now;
    if (old.length > 0) {
      await forEachLimit(old, 16, async (id) => {
        await this.deleteLocal(id);
      });
      this.log.info('dropped messages past their retention', { count: old.length });
    }
    if (becameVisible) this.wake();
    const s = this.stats(now);
    const q = this.spec.name;
    this.metrics.depth.set({ queue: q, state: 'visible' }, s.visible);
    this.metrics.depth.set({ queue: q, state: 'in_flight' }, s.inFlight);
    this.metrics.depth.set({ queue: q, state: 'delayed' }, s.delayed);
    this.metrics.stored.set({ queue: q }, s.stored);
    this.metrics.oldestAge.set({ queue: q }, s.oldestEnqueuedAt === undefined ? 0 : (now - s.oldestEnqueuedAt) / 1000);
  }

  private async applyTombs(): Promise<void> {
    const tombs = await this.ctx.store.list<Tombstone>(this.ctx.names.tombs(this.self));
    for (const t of tombs) {
      if (t.record.kind === 'delete') await this.deleteLocal(t.record.id);
      else await this.purge(t.record.before);
      await this.ctx.store.purgeMeta(t.subject);
      this.log.info('applied a pending operation kept while this host was away', { kind: t.record.kind });
    }
  }

  private async refreshClaims(): Promise<void> {
    const all = await this.ctx.store.list<ClaimRecord>(this.ctx.names.claims);
    const prefix = this.ctx.names.claim('');
    this.claims.clear();
    for (const c of all) {
      const id = c.subject.slice(prefix.length);
      if (this.msgs.has(id)) this.claims.set(id, c.record.holder);
    }
    this.lastClaimsRefresh = Date.now();
    this.claimsStale = false;
  }

  private async promote(): Promise<void> {
    const view = this.ctx.view;
    const status = (pod: string) => (pod === this.self ? 'live' : view.status(pod));
    const fenced = new Set<string>();
    const toClaim: HostMsg[] = [];
    for (const m of this.msgs.values()) {
      const d = decidePromotion(this.self, m, this.claims.get(m.id), status);
      if (d.action === 'fence' && !fenced.has(d.holder)) {
        fenced.add(d.holder);
        const ok = await view.fence(d.holder, this.self).catch((err: unknown) => {
          this.log.warn('fencing a silent queue host failed', { host: d.holder, error: describeError(err) });
          return false;
        });
        this.log.info(ok ? 'fenced a queue host whose lease expired' : 'queue host renewed its lease; not fenced', { host: d.holder });
      } else if (d.action === 'claim') {
        toClaim.push(m);
      }
    }
    if (toClaim.length === 0 || !this.heartbeat.leaseValid()) return;
    let promoted = 0;
    await forEachLimit(toClaim, 16, async (m) => {
      const subject = this.ctx.names.claim(m.id);
      const cur = await this.ctx.store.last<ClaimRecord>(subject);
      const expectedHolder = holderOf(m, this.claims.get(m.id));
      if (cur !== undefined && cur.record.holder !== expectedHolder) {
        this.claims.set(m.id, cur.record.holder); // someone promoted it already
        return;
      }
      const ttl = Math.max(60_000, m.enqueuedAt + this.spec.messageRetentionMs + 3_600_000 - Date.now());
      const r = await this.ctx.store.cas(subject, { holder: this.self, ts: Date.now() } satisfies ClaimRecord, cur?.seq ?? 0, ttl);
      if (r === CONFLICT) {
        const now = await this.ctx.store.last<ClaimRecord>(subject);
        if (now !== undefined) this.claims.set(m.id, now.record.holder);
        return;
      }
      this.claims.set(m.id, this.self);
      promoted++;
      this.metrics.promoted.inc({ queue: this.spec.name });
    });
    if (promoted > 0) {
      this.log.info('promoted standby replicas to visible', { count: promoted });
      this.wake();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeLoop?.();
    await this.loopDone;
    await this.sub?.drain().catch(() => undefined);
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
