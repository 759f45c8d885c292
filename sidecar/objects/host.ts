/**
 * The object host: the sidecar role that runs objects of one class for its app.
 *
 * It holds the host lease (membership.ts HostHeartbeat), answers forwarded
 * requests on its RPC subject, claims objects by compare-and-set on their
 * owner records (lease.ts decides when that is allowed), runs each object's
 * requests through its turn queue (turn-queue.ts) into the app
 * (app-proxy.ts), deactivates idle objects (releasing their owner record so
 * placement can move them), and drains on stop: no new work, in-flight work
 * finished, every object released, a `leave` record, then silence.
 *
 * Serving rule (lease.ts, invariant rule 1): a turn calls the app only if the
 * activation is `active`, was claimed by the current session, and the host
 * lease is valid at that moment. Anything else is answered `retry` (not
 * executed). A per-host cache of request ids → replies makes a retried id
 * return the first reply instead of running again.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { asCastellanError, CastellanError } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import type { AppProxy } from './app-proxy.ts';
import { decideClaim, type LeaseTiming, type OwnerRecord } from './lease.ts';
import { HostHeartbeat } from '../leases/heartbeat.ts';
import type { ClassView } from './membership.ts';
import type { ObjectMetrics } from './metrics.ts';
import { CONFLICT, type ObjectStore } from './ownership-store.ts';
import { encodeId } from './subjects.ts';
import { TurnQueue, type Concurrency } from './turn-queue.ts';
import { decodeEnvelope, encodeEnvelope, type ReplyMeta, type RequestMeta } from './wire.ts';

export interface HostOptions {
  cls: string;
  pod: string;
  concurrency: Concurrency;
  maxQueue: number;
  idleTimeoutMs: number;
  timing: LeaseTiming;
  streamReplicas: number;
  /** Longest a drain waits for in-flight turns (ms). */
  drainTimeoutMs: number;
  dedupe: { max: number; ttlMs: number };
}

interface Reply {
  meta: ReplyMeta;
  body?: Uint8Array;
}

type ClaimOutcome = { ok: true } | { ok: false; reply: ReplyMeta };

class Activation {
  readonly encId: string;
  readonly id: string;
  state: 'claiming' | 'active' | 'releasing' | 'gone' = 'claiming';
  token = 0;
  session = '';
  readonly queue: TurnQueue;
  ready: Promise<ClaimOutcome> = Promise.resolve({ ok: true });
  released: Promise<void> = Promise.resolve();
  lastUsed = performance.now();

  constructor(encId: string, id: string, queue: TurnQueue) {
    this.encId = encId;
    this.id = id;
    this.queue = queue;
  }
}

const retry = (reason: string): Reply => ({ meta: { t: 'retry', reason } });

/** An object this host serves right now (for storage, sidecar/storage). */
export interface ActiveObject {
  id: string;
  encId: string;
  /** Fencing token: the stream sequence of the owner record of this activation. */
  token: number;
}

export class ObjectHost {
  private readonly nc: NatsConnection;
  private readonly store: ObjectStore;
  private readonly view: ClassView;
  private readonly app: AppProxy;
  private readonly opts: HostOptions;
  private readonly metrics: ObjectMetrics;
  private readonly log: Logger;
  readonly heartbeat: HostHeartbeat;
  private readonly acts = new Map<string, Activation>();
  private readonly dedupe = new Map<string, { reply: Promise<Reply>; at: number }>();
  private sub: Subscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly inflight = new Set<Promise<void>>();
  private readonly deactivateListeners: ((encId: string, token: number) => void)[] = [];
  private readonly activateListeners: ((obj: ActiveObject) => void)[] = [];
  /** Listing hook: paths under /.castellan/sidecar/ the sidecar answers itself in the object's turn (sidecar/listing/owner.ts). */
  private readonly internal = new Map<string, (obj: ActiveObject) => Promise<{ status: number }>>();

  constructor(nc: NatsConnection, store: ObjectStore, view: ClassView, app: AppProxy, metrics: ObjectMetrics, opts: HostOptions, log: Logger) {
    this.nc = nc;
    this.store = store;
    this.view = view;
    this.app = app;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
    this.heartbeat = new HostHeartbeat(
      { read: (p) => store.readHost(opts.cls, p), write: (p, seq, record) => store.writeHost(opts.cls, p, seq, record) },
      { pod: opts.pod, timing: opts.timing },
      { onFenced: () => this.dropAll('host lease fenced'), onWritten: (seq, record) => view.observe({ seq, record }) },
      log,
    );
  }

  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.store.ensureStream(this.opts.cls, this.opts.streamReplicas);
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
        this.log.warn('creating the class stream failed; retrying', { error: describeError(err), attempt });
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
    await this.view.whenReady();
    await this.heartbeat.start();
    const subject = this.store.names(this.opts.cls).rpc(this.opts.pod);
    this.sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) {
          this.log.warn('rpc subscription error', { error: describeError(err) });
          return;
        }
        const p = this.onMessage(msg).catch((e: unknown) => {
          this.log.error('handling a forwarded request failed', { error: describeError(e) });
        });
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
      },
    });
    const every = Math.max(100, Math.min(1_000, this.opts.idleTimeoutMs / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
    this.log.info('object host started', { cls: this.opts.cls, subject, session: this.heartbeat.sessionId });
  }

  /** Whether this host can take requests (for /readyz). */
  ready(): true | string {
    if (this.draining) return 'draining';
    return this.heartbeat.leaseValid() ? true : 'host lease not held';
  }

  get activeCount(): number {
    return this.acts.size;
  }

  get cls(): string {
    return this.opts.cls;
  }

  /**
   * The activation of `id` if this host may serve it at this moment (active,
   * claimed by the current session, lease valid); counts as use for idleness.
   */
  activeObject(id: string): ActiveObject | undefined {
    const a = this.acts.get(encodeId(id));
    if (a === undefined || a.state !== 'active' || a.session !== this.heartbeat.sessionId || !this.heartbeat.leaseValid()) return undefined;
    a.lastUsed = performance.now();
    return { id: a.id, encId: a.encId, token: a.token };
  }

  /** Called when an activation starts (claimed; storage preloads its state). */
  onActivate(fn: (obj: ActiveObject) => void): void {
    this.activateListeners.push(fn);
  }

  /** Answers `path` (reserved, never from callers: routes.ts) in the sidecar, as a turn of the object. */
  handleInternally(path: string, fn: (obj: ActiveObject) => Promise<{ status: number }>): void {
    this.internal.set(path, fn);
  }

  /** Called when an activation ends (released, dropped): its token is no longer this host's. */
  onDeactivate(fn: (encId: string, token: number) => void): void {
    this.deactivateListeners.push(fn);
  }

  private deactivated(a: Activation): void {
    for (const fn of this.deactivateListeners) {
      try {
        fn(a.encId, a.token);
      } catch (err) {
        this.log.error('deactivate listener failed', { error: describeError(err) });
      }
    }
  }

  private async onMessage(msg: Msg): Promise<void> {
    let reply: Reply;
    try {
      const { meta, body } = decodeEnvelope<RequestMeta>(msg.data);
      reply = await this.handle(meta, body);
    } catch (err) {
      const e = asCastellanError(err);
      reply = { meta: { t: 'error', status: 400, code: 'BAD_REQUEST', message: `Malformed forwarded request: ${e.message}`, retryable: false } };
    }
    if (msg.reply !== undefined && msg.reply !== '') msg.respond(encodeEnvelope(reply.meta, reply.body));
  }

  private handle(meta: RequestMeta, body: Uint8Array): Promise<Reply> {
    if (this.draining) return Promise.resolve(retry('draining'));
    this.pruneDedupe();
    const seen = this.dedupe.get(meta.rid);
    if (seen !== undefined) return seen.reply;
    const reply = this.process(meta, body);
    this.dedupe.set(meta.rid, { reply, at: performance.now() });
    // Only replies after which the app may have run are remembered; a retry
    // of a never-executed request must be free to run.
    void reply.then((r) => {
      if (r.meta.t === 'retry' || r.meta.t === 'redirect') this.dedupe.delete(meta.rid);
    });
    return reply;
  }

  private pruneDedupe(): void {
    const now = performance.now();
    for (const [rid, e] of this.dedupe) {
      if (this.dedupe.size <= this.opts.dedupe.max && now - e.at < this.opts.dedupe.ttlMs) break;
      this.dedupe.delete(rid);
    }
  }

  private async process(meta: RequestMeta, body: Uint8Array): Promise<Reply> {
    const received = performance.now();
    const encId = encodeId(meta.id);
    let act: Activation | undefined;
    for (;;) {
      act = this.acts.get(encId);
      if (act?.state === 'releasing') {
        await act.released;
        continue;
      }
      if (act === undefined) act = this.activate(encId, meta.id);
      break;
    }
    const a = act;
    try {
      return await a.queue.run(async () => {
        const outcome = await a.ready;
        if (!outcome.ok) return { meta: outcome.reply };
        if (this.draining && a.state !== 'active') return retry('draining');
        if (a.state !== 'active' || a.session !== this.heartbeat.sessionId) return retry('not owner any more');
        if (!this.heartbeat.leaseValid()) return retry('host lease not valid');
        const remaining = meta.timeoutMs - (performance.now() - received);
        if (remaining <= 0) return retry('caller deadline passed before the turn');
        a.lastUsed = performance.now();
        try {
          const own = this.internal.get(meta.path);
          if (own !== undefined) {
            const r = await own({ id: a.id, encId: a.encId, token: a.token });
            return { meta: { t: 'ok', status: r.status, headers: [], pod: this.opts.pod, token: a.token } };
          }
          const res = await this.app.call({
            method: meta.method,
            target: `${meta.path === '' ? '/' : meta.path}${meta.query === '' ? '' : `?${meta.query}`}`,
            headers: [
              ...meta.headers,
              ['castellan-class', this.opts.cls],
              ['castellan-id', encodeURIComponent(meta.id)],
              ['castellan-request-id', meta.rid],
              ['castellan-activation', String(a.token)],
            ],
            body,
            timeoutMs: remaining,
          });
          return { meta: { t: 'ok', status: res.status, headers: res.headers, pod: this.opts.pod, token: a.token }, body: res.body };
        } finally {
          a.lastUsed = performance.now();
        }
      });
    } catch (err) {
      const e = err instanceof CastellanError ? err : asCastellanError(err);
      if (!(err instanceof CastellanError)) this.log.error('object turn failed', { error: describeError(err) });
      return { meta: { t: 'error', status: e.status, code: e.code, message: e.message, retryable: e.retryable } };
    }
  }

  private activate(encId: string, id: string): Activation {
    const a = new Activation(encId, id, new TurnQueue(this.opts.concurrency, this.opts.maxQueue));
    this.acts.set(encId, a);
    a.ready = this.claim(a).then(
      (o) => {
        if (!o.ok && this.acts.get(encId) === a) {
          a.state = 'gone';
          this.acts.delete(encId);
        }
        if (o.ok) {
          for (const fn of this.activateListeners) {
            try {
              fn({ id: a.id, encId: a.encId, token: a.token });
            } catch (err) {
              this.log.error('activate listener failed', { error: describeError(err) });
            }
          }
        }
        this.metrics.activeObjects.set({ class: this.opts.cls }, this.acts.size);
        return o;
      },
      (err: unknown) => {
        this.log.warn('claim failed', { id, error: describeError(err) });
        a.state = 'gone';
        if (this.acts.get(encId) === a) this.acts.delete(encId);
        return { ok: false, reply: { t: 'retry', reason: `claim failed: ${describeError(err)}` } };
      },
    );
    return a;
  }

  /** Takes ownership of an object, or says where it lives (lease.ts decideClaim). */
  private async claim(a: Activation): Promise<ClaimOutcome> {
    const { cls, pod } = this.opts;
    for (let attempt = 0; attempt < 6; attempt++) {
      if (this.draining) return { ok: false, reply: { t: 'retry', reason: 'draining' } };
      const session = this.heartbeat.sessionId;
      const owner = await this.store.readOwner(cls, a.encId);
      const ownerHost = owner === undefined ? undefined : this.view.host(owner.record.pod);
      const d = decideClaim(owner, { pod, sessionId: session }, ownerHost, performance.now(), this.opts.timing);
      switch (d.action) {
        case 'serve':
          a.token = owner?.seq ?? 0;
          a.session = session;
          a.state = 'active';
          return { ok: true };
        case 'claim': {
          if (!this.heartbeat.leaseValid()) return { ok: false, reply: { t: 'retry', reason: 'host lease not valid' } };
          const record: OwnerRecord = { state: 'owned', pod, sessionId: session, ts: Date.now() };
          const r = await this.store.writeOwner(cls, a.encId, d.expectSeq, record);
          if (r === CONFLICT) {
            this.metrics.claims.inc({ class: cls, result: 'conflict' });
            continue;
          }
          this.metrics.claims.inc({ class: cls, result: 'won' });
          if (owner?.record.state === 'owned') {
            this.metrics.failovers.inc({ class: cls });
            this.log.info('took over object', { id: a.id, from: owner.record.pod, token: r });
          }
          a.token = r;
          a.session = session;
          a.state = 'active';
          return { ok: true };
        }
        case 'fence': {
          const fresh = await this.store.readHost(cls, d.pod);
          if ((fresh?.seq ?? 0) !== d.expectHostSeq) {
            if (fresh !== undefined) this.view.observe(fresh);
            continue;
          }
          const r = await this.store.writeHost(cls, d.pod, d.expectHostSeq, { kind: 'fenced', pod: d.pod, sessionId: d.sessionId, ts: Date.now(), by: pod });
          if (r === CONFLICT) {
            const again = await this.store.readHost(cls, d.pod);
            if (again !== undefined) this.view.observe(again);
          } else {
            this.log.warn('fenced an expired host', { host: d.pod, session: d.sessionId });
            this.view.observe({ seq: r, record: { kind: 'fenced', pod: d.pod, sessionId: d.sessionId, ts: Date.now(), by: pod } });
          }
          continue;
        }
        case 'redirect':
          return { ok: false, reply: { t: 'redirect', pod: d.pod } };
        case 'wait':
          return { ok: false, reply: { t: 'retry', reason: d.reason } };
      }
    }
    return { ok: false, reply: { t: 'retry', reason: 'ownership contended' } };
  }

  /** Releases one idle activation: new requests wait, then claim afresh. */
  private release(a: Activation): Promise<void> {
    if (a.state !== 'active') return a.released;
    a.state = 'releasing';
    a.released = (async () => {
      try {
        if (a.session === this.heartbeat.sessionId) {
          const r = await this.store.writeOwner(this.opts.cls, a.encId, a.token, { state: 'released', pod: this.opts.pod, sessionId: a.session, ts: Date.now() });
          if (r === CONFLICT) this.log.warn('owner record changed under an active object', { id: a.id, token: a.token });
        }
      } catch (err) {
        this.log.warn('releasing an object failed; it stays owned by this session', { id: a.id, error: describeError(err) });
      } finally {
        a.state = 'gone';
        if (this.acts.get(a.encId) === a) this.acts.delete(a.encId);
        this.metrics.activeObjects.set({ class: this.opts.cls }, this.acts.size);
        this.deactivated(a);
      }
    })();
    return a.released;
  }

  private sweep(): void {
    const now = performance.now();
    let depth = 0;
    let max = 0;
    for (const a of this.acts.values()) {
      depth += a.queue.depth;
      max = Math.max(max, a.queue.depth);
      if (a.state === 'active' && a.queue.isIdle() && now - a.lastUsed >= this.opts.idleTimeoutMs && !this.draining) {
        this.log.debug('deactivating idle object', { id: a.id });
        void this.release(a);
      }
    }
    this.metrics.queueDepth.set({ class: this.opts.cls }, depth);
    this.metrics.queueDepthMax.set({ class: this.opts.cls }, max);
    this.metrics.activeObjects.set({ class: this.opts.cls }, this.acts.size);
  }

  /** Forgets every activation (the session was fenced: none of them is ours any more). */
  private dropAll(why: string): void {
    if (this.acts.size > 0) this.log.warn('dropping all activations', { why, count: this.acts.size });
    for (const a of this.acts.values()) {
      a.state = 'gone';
      this.deactivated(a);
    }
    this.acts.clear();
    this.metrics.activeObjects.set({ class: this.opts.cls }, 0);
  }

  /**
   * Graceful stop: refuse new work (callers retry elsewhere, nothing ran),
   * finish what is queued, release every object, leave, unsubscribe.
   */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    await this.heartbeat.drain();
    const idle = Promise.all([...this.acts.values()].map((a) => Promise.all([a.ready, a.queue.whenIdle()])));
    await Promise.race([idle, new Promise((r) => setTimeout(r, this.opts.drainTimeoutMs).unref())]);
    await Promise.all([...this.acts.values()].map((a) => this.release(a)));
    await this.heartbeat.leave();
    this.log.info('object host drained', { cls: this.opts.cls });
    await Promise.race([Promise.all([...this.inflight]), new Promise((r) => setTimeout(r, 1_000).unref())]);
    await this.sub?.drain().catch(() => undefined);
  }

  /** Hard stop (tests): no release, no leave; the lease runs out. */
  stop(): void {
    this.heartbeat.stop();
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sub?.unsubscribe();
  }
}
