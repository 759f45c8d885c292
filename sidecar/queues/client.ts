/**
 * The caller side of replicated queues, in every sidecar (any role): learns a
 * queue's settings from its config record in NATS, watches its hosts'
 * leases, and spreads enqueues and receives over the live hosts. Deletes and
 * purges fan out to every replica host; for a host that is down they leave a
 * durable tombstone in the meta stream that the host applies when it returns.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { CallerIdentity } from '../../common/access.ts';
import { CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { LeaseTiming } from '../objects/lease.ts';
import { encodedSize, pickTargets, shareOut } from './logic.ts';
import { QueueView } from './membership.ts';
import type { QueueMetrics } from './metrics.ts';
import { isValidQueueName, queueNames, type QueueNames } from './names.ts';
import { decodeReceipt, encodeReceipt, type Receipt } from './receipt.ts';
import { loadReceiptKey } from './receipt-key.ts';
import { hostPods, LIMITS, type QueueSpec } from './spec.ts';
import { QueueStore } from './store.ts';
import { decodeJson, encodeJson, type HostReply, type HostRequest, type HostStats, type ReceivedMessage } from './wire.ts';
import { isNoResponders } from '../nats-errors.ts';

export interface SendInput {
  body: string;
  replicas?: number;
  delaySeconds?: number;
  deduplicationId?: string;
  attributes?: Record<string, string>;
  /** Internal (dead-letter moves; never from the HTTP API): keep this message id. */
  messageId?: string;
  /** Internal (dead-letter moves): keep this first-enqueue time (wall ms). */
  enqueuedAt?: number;
}

export interface ReceiveInput {
  maxMessages: number;
  waitSeconds: number;
  visibilityTimeoutSeconds?: number;
}

export interface OutMessage {
  messageId: string;
  receiptHandle: string;
  body: string;
  attributes: Record<string, string>;
  receiveCount: number;
  enqueuedAt: string;
  replicas: string[];
}

export interface ClientOptions {
  prefix: string;
  namespace: string;
  timing: LeaseTiming;
  requestTimeoutMs: number;
  unavailableWaitMs: number;
  /** Who this sidecar is: named in every host RPC subject (common/access.ts). */
  caller: CallerIdentity;
}

/** What a sidecar knows about one queue it talks to. */
export interface QueueCtx {
  name: string;
  names: QueueNames;
  store: QueueStore;
  view: QueueView;
  spec: QueueSpec;
  specAt: number;
  key: string;
  wake?: Subscription;
  waiters: Set<() => void>;
  /** Hosts that recently announced or returned messages (pod → when, monotonic ms): tried first. */
  hints: Map<string, number>;
  lastUsed: number;
}

class HostUnreachable extends Error {}

/** Bytes a message counts against maxMessageBytes: body plus attribute names and values. */
export function messageSize(body: string, attributes: Record<string, string> | undefined): number {
  let n = Buffer.byteLength(body, 'utf8');
  for (const [k, v] of Object.entries(attributes ?? {})) n += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8');
  return n;
}

const CONFIG_TTL_MS = 5_000;
const UNKNOWN_TTL_MS = 1_000;

export class QueueClient {
  private readonly nc: NatsConnection;
  private readonly metrics: QueueMetrics;
  private readonly opts: ClientOptions;
  private readonly log: Logger;
  private readonly ctxs = new Map<string, QueueCtx>();
  private readonly unknown = new Map<string, number>();
  private rr = Math.floor(Math.random() * 1000);

  constructor(nc: NatsConnection, metrics: QueueMetrics, opts: ClientOptions, log: Logger) {
    this.nc = nc;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
  }

  /** The queue's context; 404 QUEUE_NOT_FOUND when no config record exists. */
  async queue(name: string): Promise<QueueCtx> {
    if (!isValidQueueName(name)) throw Errors.notFound(`No ReplicatedQueue "${name}" (not a valid queue name).`, 'QUEUE_NOT_FOUND');
    const now = performance.now();
    const ctx = this.ctxs.get(name);
    if (ctx !== undefined && now - ctx.specAt < CONFIG_TTL_MS) {
      ctx.lastUsed = now;
      return ctx;
    }
    const unknownAt = this.unknown.get(name);
    if (ctx === undefined && unknownAt !== undefined && now - unknownAt < UNKNOWN_TTL_MS) throw this.notFound(name);
    const names = queueNames(this.opts.prefix, this.opts.namespace, name);
    const store = ctx?.store ?? new QueueStore(this.nc, names, Math.max(1_000, Math.min(10_000, this.opts.requestTimeoutMs)));
    let rec;
    try {
      rec = await store.readConfig();
    } catch (err) {
      if (ctx !== undefined) return ctx; // keep the last known settings through a NATS hiccup
      throw Errors.unavailable(`Cannot read the configuration of queue "${name}": ${describeError(err)}`, 'QUEUE_UNAVAILABLE', err);
    }
    if (rec === undefined) {
      this.unknown.set(name, now);
      if (ctx !== undefined) {
        this.ctxs.delete(name);
        this.closeCtx(ctx);
      }
      throw this.notFound(name);
    }
    if (ctx !== undefined) {
      ctx.spec = rec.spec;
      ctx.specAt = now;
      ctx.lastUsed = now;
      return ctx;
    }
    const key = await loadReceiptKey(this.nc, names).catch((err: unknown) => {
      throw Errors.unavailable(`Cannot read the receipt key of queue "${name}": ${describeError(err)}`, 'QUEUE_UNAVAILABLE', err);
    });
    const view = new QueueView(store, this.opts.timing, this.log.child({ queue: name }));
    const created: QueueCtx = { name, names, store, view, spec: rec.spec, specAt: now, key, waiters: new Set(), hints: new Map(), lastUsed: now };
    this.ctxs.set(name, created);
    this.unknown.delete(name);
    await view.whenReady();
    return created;
  }

  /** Registers an already-known queue (a queue host's own), sharing its view. */
  adopt(ctx: QueueCtx): void {
    this.ctxs.set(ctx.name, ctx);
  }

  private notFound(name: string): CastellanError {
    return Errors.notFound(`No ReplicatedQueue "${name}" in namespace "${this.opts.namespace}" (no queue host has registered it).`, 'QUEUE_NOT_FOUND');
  }

  /** One request to one host. Error replies become CastellanErrors; no answer becomes HostUnreachable. */
  async rpc(ctx: QueueCtx, pod: string, req: HostRequest, timeoutMs = this.opts.requestTimeoutMs): Promise<Extract<HostReply, { ok: true }>> {
    let data: Uint8Array;
    try {
      const m = await this.nc.request(ctx.names.rpc(pod, this.opts.caller), encodeJson(req), { timeout: Math.max(1, Math.floor(timeoutMs)) });
      data = m.data;
    } catch (err) {
      throw new HostUnreachable(`queue host ${pod} did not answer ${req.op}: ${isNoResponders(err) ? 'no responders' : describeError(err)}`, { cause: err });
    }
    const reply = decodeJson<HostReply>(data);
    if (!reply.ok) throw new CastellanError(reply.status, reply.code, reply.message, { retryable: reply.retryable });
    return reply;
  }

  /** Live hosts, waiting up to unavailableWait for at least `need` of them. */
  private async liveHosts(ctx: QueueCtx, need: number): Promise<string[]> {
    const deadline = performance.now() + this.opts.unavailableWaitMs;
    for (;;) {
      const live = ctx.view.live();
      if (live.length >= need) return live;
      if (performance.now() >= deadline) return live;
      await sleep(Math.max(50, this.opts.timing.ttl / 4));
      await ctx.view.poll();
    }
  }

  async send(name: string, input: SendInput): Promise<{ messageId: string; replicas: string[] }> {
    const ctx = await this.queue(name);
    return this.sendTo(ctx, input);
  }

  async sendTo(ctx: QueueCtx, input: SendInput): Promise<{ messageId: string; replicas: string[] }> {
    const spec = ctx.spec;
    const size = messageSize(input.body, input.attributes);
    if (size > spec.maxMessageBytes) {
      throw Errors.payloadTooLarge(`Message is ${size} bytes (body plus attributes); queue "${spec.name}" accepts at most ${spec.maxMessageBytes}.`);
    }
    const replicas = input.replicas ?? spec.replicaCount;
    if (replicas > spec.hosts) {
      throw Errors.badRequest(`replicas is ${replicas} but queue "${spec.name}" has only ${spec.hosts} configured hosts.`, 'INVALID_REPLICAS');
    }
    const delayMs = input.delaySeconds === undefined ? spec.delayMs : input.delaySeconds * 1000;
    const live = await this.liveHosts(ctx, replicas);
    if (live.length === 0) throw Errors.unavailable(`No queue host of "${spec.name}" is live.`, 'QUEUE_UNAVAILABLE');
    if (replicas > live.length) {
      throw Errors.unavailable(`replicas is ${replicas} but only ${live.length} host(s) of queue "${spec.name}" are live (${live.join(', ')}).`, 'NOT_ENOUGH_HOSTS');
    }
    const req: HostRequest = {
      op: 'enqueue',
      body: input.body,
      attributes: input.attributes ?? {},
      delayMs,
      replicas,
      ...(input.deduplicationId === undefined ? {} : { dedupId: input.deduplicationId }),
      ...(input.messageId === undefined ? {} : { messageId: input.messageId }),
      ...(input.enqueuedAt === undefined ? {} : { enqueuedAt: input.enqueuedAt }),
    };
    // What travels is JSON (escapes can make a body several times larger): that must fit in one
    // NATS message with room for the rest of a request or a receive reply.
    const maxPayload = this.nc.info?.max_payload ?? 1024 * 1024;
    const wire = encodedSize(input.body, input.attributes ?? {});
    if (wire + 64 * 1024 > maxPayload) {
      throw Errors.payloadTooLarge(`Message is ${wire} bytes as JSON; the NATS servers carry at most ${maxPayload} bytes per message (max_payload), less 64 KiB of headroom.`);
    }
    const tried = new Set<string>();
    let last: unknown;
    for (let attempt = 0; attempt < 6; attempt++) {
      const [pod] = pickTargets(ctx.view.live(), tried, 1, this.rr++);
      if (pod === undefined) break;
      tried.add(pod);
      try {
        const r = await this.rpc(ctx, pod, req, Math.min(this.opts.requestTimeoutMs, 10_000));
        return { messageId: r.messageId as string, replicas: r.replicas as string[] };
      } catch (err) {
        last = err;
        if (err instanceof HostUnreachable || (err instanceof CastellanError && err.retryable && err.code !== 'NOT_ENOUGH_HOSTS')) {
          this.log.debug('enqueue attempt failed; trying another host', { queue: spec.name, host: pod, error: describeError(err) });
          continue;
        }
        throw err;
      }
    }
    if (last instanceof CastellanError) throw last;
    throw Errors.unavailable(`No queue host of "${spec.name}" accepted the message: ${describeError(last)}`, 'QUEUE_UNAVAILABLE', last);
  }

  async receive(name: string, input: ReceiveInput): Promise<OutMessage[]> {
    const ctx = await this.queue(name);
    const visibilityMs = (input.visibilityTimeoutSeconds ?? ctx.spec.visibilityTimeoutMs / 1000) * 1000;
    const deadline = performance.now() + input.waitSeconds * 1000;
    for (;;) {
      const armed = this.armWake(ctx);
      const out = await this.receiveOnce(ctx, input.maxMessages, visibilityMs);
      const now = performance.now();
      // While a host that just died is being failed over, its messages are briefly invisible
      // everywhere: an empty answer then would tell a draining consumer the queue is empty.
      // Wait (even with waitSeconds 0) until the promotion had time to happen, at most 5 s.
      const settle = Math.min(ctx.view.failoverPendingUntil(now), now + 5_000);
      const left = Math.max(deadline, settle) - now;
      if (out.length > 0 || left <= 0) {
        armed.cancel();
        return out;
      }
      // An empty long poll asks again only when a host announces a message (wake) or a failover
      // is settling (short waits then), not once per host per second.
      await armed.wait(settle > now ? Math.min(250, left) : left);
    }
  }

  /**
   * One pass over the reachable hosts, in parallel: hinted hosts first, each
   * asked for its share of `max` (the shares add up to `max`, so nothing is
   * received that cannot be returned); hosts that said they have more are then
   * asked for what is still missing.
   */
  private async receiveOnce(ctx: QueueCtx, max: number, visibilityMs: number): Promise<OutMessage[]> {
    const out: OutMessage[] = [];
    let pending = receiveOrder(ctx.view.reachable(), ctx.hints, this.rr++);
    const more: string[] = [];
    const ask = async (pod: string, n: number): Promise<void> => {
      try {
        const r = await this.rpc(ctx, pod, { op: 'receive', max: n, visibilityMs }, Math.min(this.opts.requestTimeoutMs, 5_000));
        for (const m of r.messages ?? []) out.push(this.present(ctx, m));
        if (r.more === true) {
          ctx.hints.set(pod, performance.now());
          if ((r.messages ?? []).length > 0) more.push(pod);
        } else ctx.hints.delete(pod);
      } catch (err) {
        if (!(err instanceof HostUnreachable) && !(err instanceof CastellanError && err.retryable)) throw err;
        if (err instanceof HostUnreachable) ctx.view.suspect(pod);
        this.log.debug('receive from host failed', { queue: ctx.name, host: pod, error: describeError(err) });
      }
    };
    while (out.length < max && pending.length > 0) {
      const round = shareOut(pending, max - out.length);
      pending = pending.slice(round.length);
      await Promise.all(round.map((r) => ask(r.pod, r.max)));
    }
    while (out.length < max && more.length > 0) {
      const round = shareOut(more.splice(0), max - out.length);
      await Promise.all(round.map((r) => ask(r.pod, r.max)));
    }
    return out;
  }

  private present(ctx: QueueCtx, m: ReceivedMessage): OutMessage {
    const receipt: Receipt = { q: ctx.name, h: m.holder, id: m.messageId, r: m.replicas, c: m.receiveCount, t: m.enqueuedAt };
    return {
      messageId: m.messageId,
      receiptHandle: encodeReceipt(receipt, ctx.key),
      body: m.body,
      attributes: m.attributes,
      receiveCount: m.receiveCount,
      enqueuedAt: new Date(m.enqueuedAt).toISOString(),
      replicas: m.replicas,
    };
  }

  /** Subscribes to the queue's wake subject; `wait` resolves on a wake or after `ms`. */
  private armWake(ctx: QueueCtx): { wait(ms: number): Promise<void>; cancel(): void } {
    ctx.wake ??= this.nc.subscribe(ctx.names.wake, {
      callback: (_err, msg) => {
        const pod = new TextDecoder().decode(msg.data);
        if (pod !== '' && ctx.hints.size < 1_000) ctx.hints.set(pod, performance.now());
        for (const w of [...ctx.waiters]) w();
      },
    });
    let woken = false;
    let resolveFn: (() => void) | undefined;
    const waiter = () => {
      woken = true;
      resolveFn?.();
    };
    ctx.waiters.add(waiter);
    return {
      wait: (ms) =>
        new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            ctx.waiters.delete(waiter);
            resolve();
          };
          const t = setTimeout(done, ms);
          if (woken) done();
          else resolveFn = done;
        }),
      cancel: () => ctx.waiters.delete(waiter),
    };
  }

  decode(ctx: QueueCtx, handle: string): Receipt {
    return decodeReceipt(handle, ctx.key, ctx.name);
  }

  async delete(name: string, handle: string): Promise<void> {
    const ctx = await this.queue(name);
    const r = this.decode(ctx, handle);
    await this.deleteReplicas(ctx, r.id, [r.h, ...r.r]);
  }

  /** Deletes a message on every host that may hold a replica; a tombstone for each host that cannot be reached now. */
  async deleteReplicas(ctx: QueueCtx, id: string, pods: string[]): Promise<void> {
    const targets = [...new Set(pods)];
    await Promise.all(
      targets.map(async (pod) => {
        if (ctx.view.isReachable(pod)) {
          try {
            await this.rpc(ctx, pod, { op: 'delete', id }, Math.min(this.opts.requestTimeoutMs, 5_000));
            return;
          } catch (err) {
            this.log.info('delete on host failed; leaving a tombstone', { queue: ctx.name, host: pod, id, error: describeError(err) });
          }
        }
        await this.tomb(ctx, pod, id, { kind: 'delete', id, ts: Date.now() });
      }),
    );
  }

  async tomb(ctx: QueueCtx, pod: string, key: string, record: Tombstone): Promise<void> {
    try {
      await ctx.store.put(ctx.names.tomb(pod, key), record, ctx.spec.messageRetentionMs + 3_600_000);
    } catch (err) {
      throw Errors.unavailable(`Could not record the pending ${record.kind} for queue host ${pod}: ${describeError(err)}`, 'QUEUE_UNAVAILABLE', err);
    }
  }

  async changeVisibility(name: string, handle: string, seconds: number): Promise<void> {
    const ctx = await this.queue(name);
    const r = this.decode(ctx, handle);
    try {
      await this.rpc(ctx, r.h, { op: 'visibility', id: r.id, receiveCount: r.c, visibilityMs: seconds * 1000 });
    } catch (err) {
      if (err instanceof HostUnreachable) {
        if (ctx.view.status(r.h) !== 'live') {
          throw Errors.conflict(`The host that delivered this message (${r.h}) is gone; the message will be delivered again from another replica.`, 'MESSAGE_NOT_IN_FLIGHT');
        }
        throw Errors.unavailable(`Queue host ${r.h} did not answer.`, 'QUEUE_UNAVAILABLE', err);
      }
      throw err;
    }
  }

  async describe(name: string): Promise<Record<string, unknown>> {
    const ctx = await this.queue(name);
    const hosts = ctx.view.reachable();
    const stats = await Promise.all(
      hosts.map(async (pod) => {
        try {
          return (await this.rpc(ctx, pod, { op: 'stats' }, 5_000)).stats;
        } catch (err) {
          this.log.debug('stats from host failed', { queue: name, host: pod, error: describeError(err) });
          return undefined;
        }
      }),
    );
    const sum = (k: keyof HostStats) => stats.reduce((a, s) => a + ((s?.[k] as number | undefined) ?? 0), 0);
    const s = ctx.spec;
    return {
      name,
      hosts: ctx.view.live(),
      replicaCount: s.replicaCount,
      approximateMessages: sum('visible'),
      approximateInFlight: sum('inFlight'),
      approximateDelayed: sum('delayed'),
      configuredHosts: s.hosts,
      visibilityTimeoutSeconds: s.visibilityTimeoutMs / 1000,
      messageRetentionSeconds: s.messageRetentionMs / 1000,
      maxMessageBytes: s.maxMessageBytes,
      delaySeconds: s.delayMs / 1000,
      ...(s.deadLetter === undefined ? {} : { deadLetter: s.deadLetter }),
    };
  }

  async purge(name: string): Promise<number> {
    const ctx = await this.queue(name);
    const before = Date.now();
    const pods = [...new Set([...hostPods(ctx.spec), ...ctx.view.known()])];
    let purged = 0;
    await Promise.all(
      pods.map(async (pod) => {
        if (ctx.view.isReachable(pod)) {
          try {
            purged += (await this.rpc(ctx, pod, { op: 'purge', before }, 30_000)).purged ?? 0;
            return;
          } catch (err) {
            this.log.info('purge on host failed; leaving a tombstone', { queue: name, host: pod, error: describeError(err) });
          }
        }
        await this.tomb(ctx, pod, 'purge', { kind: 'purge', before, ts: Date.now() });
      }),
    );
    return purged;
  }

  private closeCtx(ctx: QueueCtx): void {
    ctx.view.stop();
    ctx.wake?.unsubscribe();
    for (const w of ctx.waiters) w();
  }

  stop(): void {
    for (const ctx of this.ctxs.values()) this.closeCtx(ctx);
    this.ctxs.clear();
  }
}

/** Hosts to ask, hinted ones first (most recent first), the rest rotated by `start`. */
export function receiveOrder(hosts: readonly string[], hints: ReadonlyMap<string, number>, start: number): string[] {
  const hinted = hosts.filter((h) => hints.has(h)).sort((a, b) => (hints.get(b) as number) - (hints.get(a) as number));
  const rest = hosts.filter((h) => !hints.has(h));
  const n = rest.length;
  return [...hinted, ...rest.map((_, i) => rest[(((start + i) % n) + n) % n] as string)];
}

export type Tombstone = { kind: 'delete'; id: string; ts: number } | { kind: 'purge'; before: number; ts: number };

export const BATCH_LIMIT = LIMITS.maxBatch;
