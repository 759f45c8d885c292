/**
 * The object host: the sidecar role that runs objects of one class for its app.
 *
 * It holds the host lease (membership.ts HostHeartbeat), answers forwarded
 * requests on its RPC subject, claims objects by compare-and-set on their
 * owner records (lease.ts decides when that is allowed), runs each object's
 * requests through its turn queue (turn-queue.ts) into the app
 * (app-proxy.ts), deactivates idle objects (releasing their owner record so
 * placement can move them), and drains on stop: first it stops being
 * placeable (a `draining` heartbeat, given the callers' views a poll to see
 * it) while still serving, then it refuses new work unexecuted (`retry`:
 * callers move on), finishes the turns queued, releases each object as soon
 * as its own queue is empty, writes `leave`, then goes silent.
 *
 * Placement follows the app: a host is placeable only once its app has
 * accepted a connection (a new pod's sidecar starts before its app) and
 * while it keeps doing so; a turn whose connection the app refused never
 * reached it and is answered `retry`, so the caller tries again instead of
 * failing a call that never started.
 *
 * Serving rule (lease.ts, invariant rule 1): a turn calls the app only if the
 * activation is `active`, was claimed by the current session, and the host
 * lease is valid at that moment. Anything else is answered `retry` (not
 * executed). A per-host cache of (class, object id, request id) → reply makes
 * a retried request return the first reply instead of running again; the
 * same request id on another object is another request.
 *
 * Turns (SPEC §3 `turnTimeout`): a turn ends when the app has answered (or its
 * connection dropped: the app process is gone), never when the caller stopped
 * waiting: a caller past its deadline gets its 504 from the router while the
 * object stays busy until the handler is over, so a Serial object never has
 * two handlers at once. A turn still running after `turnTimeout` marks the
 * object stuck: its caller gets 504, waiting and new callers 503 OBJECT_STUCK
 * (retryable, never run), storage refuses the object's calls (410), the stuck
 * gauge, a log line and the readiness detail say so; when the app finally
 * answers the object is served again. App calls in flight are counted per
 * object across activations: an object is never activated again on this host
 * while a handler of an earlier activation still runs in the app.
 *
 * Storage belongs to the running turn: `turnGate` (used by sidecar/storage)
 * admits a storage call only while a turn of the object runs here and the
 * object is not stuck; a call naming a turn (`castellan-turn`) or activation
 * (`castellan-activation`), as the app received them, must name the running ones.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { decideAccess, identityFromSubject, type AccessPolicy, type CallerIdentity } from '../../common/access.ts';
import { asCastellanError, CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { appRefused, type AppProxy } from './app-proxy.ts';
import { decideClaim, type HostRecord, type LeaseTiming, type OwnerRecord } from './lease.ts';
import { HostHeartbeat } from '../leases/heartbeat.ts';
import type { ClassView } from './membership.ts';
import type { ObjectMetrics } from './metrics.ts';
import { CONFLICT, type ObjectStore } from './ownership-store.ts';
import { doorQueue, encodeId } from './subjects.ts';
import { TurnQueue, type Concurrency } from './turn-queue.ts';
import { decodeEnvelope, EARLIER_SESSION, encodeEnvelope, type ReplyMeta, type RequestMeta } from './wire.ts';

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
  /** How long one request may run in the app before the object is marked stuck (ms). */
  turnTimeoutMs: number;
  /** Request bodies that may wait per object (bytes); beyond → 429. */
  maxQueueBytes: number;
  /** Replay cache bounds: entries, bytes of remembered replies, age. */
  dedupe: { max: number; maxBytes: number; ttlMs: number };
  /** Who may call this class (common/access.ts): checked on every request, from the caller named in its subject. */
  access: AccessPolicy;
}

interface Reply {
  meta: ReplyMeta;
  body?: Uint8Array;
}

/** One request running in the app. */
interface Turn {
  readonly id: string;
  readonly rid: string;
  readonly started: number;
  stuck: boolean;
}

type ClaimOutcome = { ok: true } | { ok: false; reply: ReplyMeta };
/** Shared settled promises: every activation holds one of each until it claims or releases (memory per object). */
const CLAIM_OK: ClaimOutcome = { ok: true };
const CLAIMED: Promise<ClaimOutcome> = Promise.resolve(CLAIM_OK);
const DONE: Promise<void> = Promise.resolve();

class Activation {
  readonly encId: string;
  readonly id: string;
  state: 'claiming' | 'active' | 'releasing' | 'gone' = 'claiming';
  /** Fencing token: the sequence of the owner record this activation wrote last (re-fences move it). */
  token = 0;
  /** The token it was claimed with: names the activation (`castellan-activation`). */
  claimToken = 0;
  session = '';
  readonly queue: TurnQueue;
  ready: Promise<ClaimOutcome> = CLAIMED;
  released: Promise<void> = DONE;
  lastUsed = performance.now();
  /** Turns running in the app right now (an array: most objects hold none or one, and an empty array costs least). */
  readonly turns: Turn[] = [];
  /** Of those, the ones past turnTimeout. */
  stuck = 0;

  constructor(encId: string, id: string, queue: TurnQueue) {
    this.encId = encId;
    this.id = id;
    this.queue = queue;
  }
}

const retry = (reason: string): Reply => ({ meta: { t: 'retry', reason } });
/** How often a host tries to raise an under-replicated class stream to its requested replicas. */
const REPLICA_CHECK_MS = 10_000;
const errorReply = (e: CastellanError): Reply => ({ meta: { t: 'error', status: e.status, code: e.code, message: e.message, retryable: e.retryable } });
/** Error codes that say the request never reached the app: a retry of its id may run. */
const NEVER_RAN = new Set(['OBJECT_STUCK', 'OBJECT_OVERLOADED']);

/** Why a storage call is refused although this host owns the object (410: the turn it belongs to is not running). */
export function turnNotRunning(message: string): CastellanError {
  return new CastellanError(410, 'TURN_NOT_RUNNING', message);
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

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
  private readonly dedupe = new Map<string, { reply: Promise<Reply>; at: number; bytes: number }>();
  private dedupeBytes = 0;
  /** App calls in flight per object (encId), across activations. */
  private readonly handlers = new Map<string, number>();
  private turnSeq = 0;
  /** Replicas the class stream has (it may have been created with fewer than asked). */
  private streamReplicas = 0;
  private replicaTimer: NodeJS.Timeout | undefined;
  private raising = false;
  /**
   * App health: down until the app first accepts a connection, and after it
   * failed its probe for a lease TTL; meanwhile not placeable, objects handed over.
   */
  private appDown = true;
  private appSeen = false;
  private appFailingSince: number | undefined;
  private appTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private sub: Subscription | undefined;
  private doorSub: Subscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private draining = false;
  private stopped = false;
  private drained: Promise<void> | undefined;
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
      // Not placeable until the app answers (probeApp): a new pod's sidecar starts before its app.
      { pod: opts.pod, timing: opts.timing, placeable: false, report: () => this.stuckReport() },
      { onFenced: () => this.dropAll('host lease fenced'), onWritten: (seq, record) => view.observe({ seq, record }) },
      log,
    );
  }

  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.streamReplicas = await this.store.ensureStream(this.opts.cls, this.opts.streamReplicas);
        this.reportReplicas();
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
        this.log.warn('creating the class stream failed; retrying', { error: describeError(err), attempt });
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
    await this.view.whenReady();
    await this.heartbeat.start();
    const names = this.store.names(this.opts.cls);
    const subject = names.rpcServe(this.opts.pod);
    const callback = (err: Error | null, msg: Msg): void => {
      if (err !== null) {
        this.log.warn('rpc subscription error', { error: describeError(err) });
        return;
      }
      const p = this.onMessage(msg).catch((e: unknown) => {
        this.log.error('handling a forwarded request failed', { error: describeError(e) });
      });
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    };
    this.sub = this.nc.subscribe(subject, { callback });
    // The class's door: callers from other namespaces (they cannot see the host records) reach any host; it serves, claims or redirects.
    this.doorSub = this.nc.subscribe(names.doorServe, { queue: doorQueue, callback });
    const every = Math.max(100, Math.min(1_000, this.opts.idleTimeoutMs / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
    this.replicaTimer = setInterval(() => void this.raiseReplicas(), REPLICA_CHECK_MS);
    this.replicaTimer.unref();
    this.appTimer = setInterval(() => void this.probeApp(), Math.max(100, Math.min(500, this.opts.timing.ttl / 2)));
    this.appTimer.unref();
    void this.probeApp();
    this.log.info('object host started', { cls: this.opts.cls, subject, session: this.heartbeat.sessionId });
  }

  /**
   * App health gates hosting (issue 12, item 6): an app that fails its probe
   * (TCP connect) for a lease TTL makes this host unplaceable (`draining`
   * heartbeat) and releases its objects so other hosts take them; requests
   * that still reach it are refused unexecuted (`retry`). When the app
   * answers again the host is placeable again.
   */
  private async probeApp(): Promise<void> {
    if (this.probing || this.draining) return;
    this.probing = true;
    try {
      const ok = await this.app.reachable(Math.max(1_000, this.opts.timing.ttl));
      const now = performance.now();
      if (ok === true) {
        this.appFailingSince = undefined;
        if (this.appDown) {
          // Placeable in the heartbeat first; only then does the host take work (handle, ready).
          await this.heartbeat.setPlaceable(true);
          this.appDown = false;
          if (this.appSeen) this.log.warn('app reachable again; taking placements again');
          else this.log.info('app reachable; taking placements');
          this.appSeen = true;
        }
        return;
      }
      this.appFailingSince ??= now;
      // Refused: nothing listens (the app is gone) — a lease TTL. Slow (a busy machine): give it longer.
      const after = /ECONNREFUSED/.test(ok) ? this.opts.timing.ttl : Math.max(5_000, 5 * this.opts.timing.ttl);
      if (this.appDown || now - this.appFailingSince < after) return;
      this.appDown = true;
      this.log.error('app not reachable; handing this host\'s objects over to other hosts until it is back', { reason: ok, objects: this.acts.size });
      await this.heartbeat.setPlaceable(false);
      for (const a of [...this.acts.values()]) if (a.state === 'active' && a.turns.length === 0) void this.release(a);
    } finally {
      this.probing = false;
    }
  }

  private reportReplicas(): void {
    const { cls, streamReplicas: want } = this.opts;
    this.metrics.streamReplicas.set({ class: cls }, this.streamReplicas);
    this.metrics.streamReplicasRequested.set({ class: cls }, want);
    if (this.streamReplicas < want) {
      this.log.error('the class stream has fewer replicas than requested: acknowledged writes survive fewer server losses until it is raised (retried every 10 s)', {
        replicas: this.streamReplicas,
        requested: want,
      });
    }
  }

  /** Raises an under-replicated class stream once the cluster can place the replicas (a server came back). */
  private async raiseReplicas(): Promise<void> {
    if (this.raising || this.draining || this.streamReplicas >= this.opts.streamReplicas) return;
    this.raising = true;
    try {
      const have = await this.store.raiseReplicas(this.opts.cls, this.opts.streamReplicas);
      if (have !== this.streamReplicas) {
        this.streamReplicas = have;
        this.metrics.streamReplicas.set({ class: this.opts.cls }, have);
        this.log.warn('class stream replicas raised', { replicas: have, requested: this.opts.streamReplicas });
      }
    } catch (err) {
      this.log.warn('checking the class stream replicas failed', { error: describeError(err) });
    } finally {
      this.raising = false;
    }
  }

  /** Replicas of the class stream as this host last saw them, and how many were asked for. */
  replicas(): { have: number; requested: number } {
    return { have: this.streamReplicas, requested: this.opts.streamReplicas };
  }

  /** Whether this host can take requests (for /readyz); stuck objects are named. */
  ready(): true | string {
    if (this.draining) return 'draining';
    if (this.appDown) return this.appSeen ? 'app down: objects handed over to other hosts' : 'app not reachable yet: not taking placements';
    if (!this.heartbeat.leaseValid()) return 'host lease not held';
    const stuck = this.stuckObjects();
    if (stuck.length > 0) {
      const shown = stuck.slice(0, 5).map((s) => `${this.opts.cls}/${s.id} (request ${s.rid} running ${Math.round(s.ms / 1000)} s)`);
      return `${stuck.length} object(s) stuck past turnTimeout ${this.opts.turnTimeoutMs} ms: ${shown.join(', ')}${stuck.length > 5 ? ', …' : ''}`;
    }
    return true;
  }

  /** Objects with a request running past turnTimeout. */
  stuckObjects(): { id: string; rid: string; ms: number }[] {
    const now = performance.now();
    const out: { id: string; rid: string; ms: number }[] = [];
    for (const a of this.acts.values()) {
      if (a.stuck === 0) continue;
      for (const t of a.turns) if (t.stuck) out.push({ id: a.id, rid: t.rid, ms: now - t.started });
    }
    return out;
  }

  /** The stuck objects this host's heartbeat reports (the operator records them as Events). */
  private stuckReport(): Pick<HostRecord, 'stuck'> {
    const stuck = this.stuckObjects();
    if (stuck.length === 0) return {};
    return { stuck: { count: stuck.length, objects: stuck.slice(0, 5).map((s) => ({ id: s.id, rid: s.rid, forMs: Math.round(s.ms) })) } };
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

  /**
   * Admits a storage call for `id` (sidecar/storage): the object is active
   * here (else 409 NOT_OWNER), one of its turns is running in the app and
   * none is stuck (else 410 TURN_NOT_RUNNING); a given turn or activation id
   * must be the running one. Counts as use for idleness.
   */
  turnGate(id: string, claimed: { turn?: string; activation?: string }): ActiveObject {
    const obj = this.activeObject(id);
    if (obj === undefined) {
      throw Errors.notOwner(`This sidecar does not own object ${this.opts.cls}/${id} right now; storage is served only by the owning pod's sidecar, while the object is active.`);
    }
    const a = this.acts.get(obj.encId)!;
    if (claimed.activation !== undefined && claimed.activation !== String(a.claimToken)) {
      throw turnNotRunning(`Activation ${claimed.activation} of object ${this.opts.cls}/${id} is over (the object is now at activation ${a.claimToken}); its storage calls are refused.`);
    }
    if (a.stuck > 0) {
      throw turnNotRunning(
        `Object ${this.opts.cls}/${id} is stuck: a request ran past turnTimeout (${this.opts.turnTimeoutMs} ms); its turn is over and storage calls are refused until the app answers it.`,
      );
    }
    if (claimed.turn !== undefined) {
      if (!a.turns.some((t) => t.id === claimed.turn)) throw turnNotRunning(`Turn ${claimed.turn} of object ${this.opts.cls}/${id} is not running any more; its storage calls are refused.`);
    } else if (a.turns.length === 0) {
      throw turnNotRunning(
        `No request of object ${this.opts.cls}/${id} is running on this host; storage is available to the app only while it handles a request (or alarm) of the object.`,
      );
    }
    return obj;
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
    const reply = this.refusal(msg.subject) ?? (await this.answer(msg));
    if (msg.reply !== undefined && msg.reply !== '') msg.respond(encodeEnvelope(reply.meta, reply.body));
  }

  /** Who may call (common/access.ts): refused before anything runs; the caller is the one the subject names. */
  private refusal(subject: string): Reply | undefined {
    const caller = identityFromSubject(subject);
    const allowed = caller === undefined ? Errors.badRequest(`The call subject ${subject} names no caller.`) : decideAccess(this.opts.access, caller, 'DurableObject', this.opts.cls);
    if (allowed === true) return undefined;
    this.log.info('call refused', { subject, code: allowed.code });
    return errorReply(allowed);
  }

  /**
   * A request from this sidecar's own router (router.ts LocalHost): served
   * exactly as one that came over NATS from `caller`, without the round trip.
   * After a hard stop it is refused unexecuted, as NATS would find no responder.
   */
  serveLocal(meta: RequestMeta, body: Uint8Array, caller: CallerIdentity): Promise<Reply> {
    if (this.stopped) return Promise.resolve(retry('draining'));
    const allowed = decideAccess(this.opts.access, caller, 'DurableObject', this.opts.cls);
    if (allowed !== true) {
      this.log.info('call refused', { caller, code: allowed.code });
      return Promise.resolve(errorReply(allowed));
    }
    const p = this.handle(meta, body);
    const tracked = p.then(() => undefined, () => undefined);
    this.inflight.add(tracked);
    void tracked.finally(() => this.inflight.delete(tracked));
    return p;
  }

  get pod(): string {
    return this.opts.pod;
  }

  private async answer(msg: Msg): Promise<Reply> {
    let meta: RequestMeta;
    let body: Uint8Array;
    try {
      ({ meta, body } = decodeEnvelope<RequestMeta>(msg.data));
    } catch (err) {
      return { meta: { t: 'error', status: 400, code: 'BAD_REQUEST', message: `Malformed forwarded request: ${asCastellanError(err).message}`, retryable: false } };
    }
    // The receipt (call-channel.ts): sent before anything of the request can run; its flush is queued ahead of the turn.
    if (meta.ack === true && msg.reply !== undefined && msg.reply !== '') msg.respond();
    // Addressed to an earlier session of this host (it was fenced or restarted since): the caller may have sent
    // it elsewhere already when it saw that session end without a receipt (router.ts), so it never runs here.
    if (meta.session !== undefined && meta.session !== this.heartbeat.sessionId) return retry(EARLIER_SESSION);
    try {
      return await this.handle(meta, body);
    } catch (err) {
      this.log.error('handling a forwarded request failed', { error: describeError(err) });
      return errorReply(asCastellanError(err));
    }
  }

  private handle(meta: RequestMeta, body: Uint8Array): Promise<Reply> {
    // While the app is down the host is "draining": callers avoid it and go to another host.
    if (this.draining || this.appDown) return Promise.resolve(retry('draining'));
    this.pruneDedupe();
    // Scoped to the object: the same request id on another object is another request.
    const key = `${meta.cls}\0${meta.id}\0${meta.rid}`;
    const seen = this.dedupe.get(key);
    if (seen !== undefined) return seen.reply;
    const reply = this.process(meta, body);
    const entry = { reply, at: performance.now(), bytes: key.length };
    this.dedupe.set(key, entry);
    this.dedupeBytes += entry.bytes;
    // Only replies after which the app may have run are remembered; a retry
    // of a never-executed request must be free to run.
    void reply.then((r) => {
      if (this.dedupe.get(key) !== entry) return;
      if (r.meta.t === 'retry' || r.meta.t === 'redirect' || (r.meta.t === 'error' && NEVER_RAN.has(r.meta.code))) {
        this.dedupe.delete(key);
        this.dedupeBytes -= entry.bytes;
        return;
      }
      const more = (r.body?.length ?? 0) + 256;
      entry.bytes += more;
      this.dedupeBytes += more;
      this.pruneDedupe();
    });
    return reply;
  }

  /** Oldest first, until within the count, byte and age bounds. */
  private pruneDedupe(): void {
    const now = performance.now();
    const { max, maxBytes, ttlMs } = this.opts.dedupe;
    for (const [key, e] of this.dedupe) {
      if (this.dedupe.size <= max && this.dedupeBytes <= maxBytes && now - e.at < ttlMs) break;
      this.dedupe.delete(key);
      this.dedupeBytes -= e.bytes;
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
      if (act === undefined) {
        if ((this.handlers.get(encId) ?? 0) > 0) {
          return errorReply(this.stuckError(meta.id, 'a request of its previous activation on this host is still running in the app'));
        }
        act = this.activate(encId, meta.id);
      }
      break;
    }
    const a = act;
    if (a.stuck > 0) return errorReply(this.stuckError(meta.id, `a request has been running in the app for more than ${this.opts.turnTimeoutMs} ms`));
    const answer = deferred<Reply>();
    a.queue
      .run(async () => {
        const outcome = await a.ready;
        if (!outcome.ok) return answer.resolve({ meta: outcome.reply });
        if (this.draining && a.state !== 'active') return answer.resolve(retry('draining'));
        if (a.state !== 'active' || a.session !== this.heartbeat.sessionId) return answer.resolve(retry('not owner any more'));
        if (!this.heartbeat.leaseValid()) return answer.resolve(retry('host lease not valid'));
        if (meta.timeoutMs - (performance.now() - received) <= 0) return answer.resolve(retry('caller deadline passed before the turn'));
        if (a.stuck > 0) return answer.resolve(errorReply(this.stuckError(meta.id, 'another request of it is running past turnTimeout')));
        await this.runTurn(a, meta, body, answer.resolve);
      }, body.length)
      .catch((err: unknown) => {
        const e = err instanceof CastellanError ? err : asCastellanError(err);
        if (!(err instanceof CastellanError)) this.log.error('object turn failed', { error: describeError(err) });
        answer.resolve(errorReply(e));
      });
    return answer.promise;
  }

  /**
   * One turn: the app call, until the app answers or its connection drops.
   * The caller's answer comes from the app, or at turnTimeout (the object is
   * then stuck until the app answers; the turn, and the queue, go on).
   */
  private async runTurn(a: Activation, meta: RequestMeta, body: Uint8Array, answer: (r: Reply) => void): Promise<void> {
    const turn: Turn = { id: `${a.claimToken}.${++this.turnSeq}`, rid: meta.rid, started: performance.now(), stuck: false };
    a.turns.push(turn);
    this.handlers.set(a.encId, (this.handlers.get(a.encId) ?? 0) + 1);
    a.lastUsed = performance.now();
    const timer = setTimeout(() => this.markStuck(a, turn, answer), this.opts.turnTimeoutMs);
    try {
      const own = this.internal.get(meta.path);
      if (own !== undefined) {
        // A path the sidecar answers itself within the turn (listing: delete-object, sidecar/listing/).
        const r = await own({ id: a.id, encId: a.encId, token: a.token });
        answer({ meta: { t: 'ok', status: r.status, headers: [], pod: this.opts.pod, token: a.token } });
        return;
      }
      const res = await this.app.call({
        method: meta.method,
        target: `${meta.path === '' ? '/' : meta.path}${meta.query === '' ? '' : `?${meta.query}`}`,
        headers: [
          ...meta.headers,
          ['castellan-class', this.opts.cls],
          ['castellan-id', encodeURIComponent(meta.id)],
          ['castellan-request-id', meta.rid],
          ['castellan-activation', String(a.claimToken)],
          ['castellan-turn', turn.id],
        ],
        body,
      });
      answer({ meta: { t: 'ok', status: res.status, headers: res.headers, pod: this.opts.pod, token: a.token }, body: res.body });
    } catch (err) {
      if (appRefused(err)) {
        // Nothing accepted the connection: the request never reached the app. The caller retries (here or, once
        // this host is unplaceable and has handed the object over, elsewhere) instead of seeing a failure.
        answer(retry('app not reachable'));
        return;
      }
      const e = err instanceof CastellanError ? err : asCastellanError(err);
      if (!(err instanceof CastellanError)) this.log.error('object turn failed', { error: describeError(err) });
      answer(errorReply(e));
    } finally {
      clearTimeout(timer);
      a.turns.splice(a.turns.indexOf(turn), 1);
      const left = (this.handlers.get(a.encId) ?? 1) - 1;
      if (left <= 0) this.handlers.delete(a.encId);
      else this.handlers.set(a.encId, left);
      a.lastUsed = performance.now();
      if (turn.stuck) {
        a.stuck--;
        this.metrics.stuckObjects.set({ class: this.opts.cls }, this.stuckCount());
        this.log.warn('stuck object answered; serving it again', { id: a.id, rid: turn.rid, ms: Math.round(performance.now() - turn.started) });
      }
    }
  }

  private markStuck(a: Activation, turn: Turn, answer: (r: Reply) => void): void {
    turn.stuck = true;
    a.stuck++;
    this.metrics.stuck.inc({ class: this.opts.cls });
    this.metrics.stuckObjects.set({ class: this.opts.cls }, this.stuckCount());
    const refused = a.queue.failWaiting(this.stuckError(a.id, `a request has been running in the app for more than ${this.opts.turnTimeoutMs} ms`));
    this.log.error('object stuck: a request is running in the app past turnTimeout; no other request of it runs until the app answers', {
      id: a.id,
      rid: turn.rid,
      turnTimeoutMs: this.opts.turnTimeoutMs,
      refusedWaiting: refused,
    });
    answer(
      errorReply(
        Errors.timeout(
          `Object ${this.opts.cls}/${a.id} did not answer within turnTimeout (${this.opts.turnTimeoutMs} ms); the request is still running in the app, which may or may not complete it. The object is marked stuck until it answers.`,
          'OBJECT_TIMEOUT',
        ),
      ),
    );
  }

  private stuckError(id: string, why: string): CastellanError {
    return new CastellanError(503, 'OBJECT_STUCK', `Object ${this.opts.cls}/${id} is stuck: ${why}; it is served again once the app answers. Retry later.`, { retryable: true });
  }

  private stuckCount(): number {
    let n = 0;
    for (const a of this.acts.values()) if (a.stuck > 0) n++;
    return n;
  }

  private activate(encId: string, id: string): Activation {
    const a = new Activation(encId, id, new TurnQueue(this.opts.concurrency, this.opts.maxQueue, this.opts.maxQueueBytes));
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
          a.claimToken = a.token;
          a.session = session;
          a.state = 'active';
          return CLAIM_OK;
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
          a.claimToken = r;
          a.session = session;
          a.state = 'active';
          return CLAIM_OK;
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

  /**
   * Writes the owner record of an active object again (same session), after a
   * storage commit of it whose outcome is unknown (sidecar/storage): the new
   * record is ordered after that write in the stream, so the write is either
   * in before it or can never land (its fence names the old record). Calls
   * `adopt` with the new token in the same tick the activation switches to it.
   * 'moved' when the object is no longer this activation's.
   */
  async refence(encId: string, token: number, adopt: (token: number) => void): Promise<number | 'moved'> {
    const { cls, pod } = this.opts;
    const a = this.acts.get(encId);
    if (a === undefined || a.state !== 'active' || a.token !== token || a.session !== this.heartbeat.sessionId) return 'moved';
    const session = a.session;
    let r: number | typeof CONFLICT | undefined;
    let failure: unknown;
    try {
      r = await this.store.writeOwner(cls, encId, token, { state: 'owned', pod, sessionId: session, ts: Date.now() });
    } catch (err) {
      failure = err;
    }
    if (r === undefined || r === CONFLICT) {
      // Unknown or refused: our own earlier re-fence may have landed; anything else means the object moved.
      const cur = await this.store.readOwner(cls, encId);
      if (cur !== undefined && cur.seq > token && cur.record.state === 'owned' && cur.record.pod === pod && cur.record.sessionId === session) r = cur.seq;
      else if (r === CONFLICT || (cur !== undefined && cur.seq !== token)) return 'moved';
      else throw failure;
    }
    if (this.acts.get(encId) !== a || a.token !== token) return 'moved';
    adopt(r);
    a.token = r;
    this.log.info('object re-fenced after an unacknowledged storage write', { id: a.id, from: token, to: r });
    return r;
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
    // Replies past the replay window are dropped also while no request comes (an idle host keeps none).
    this.pruneDedupe();
    const now = performance.now();
    let depth = 0;
    let max = 0;
    for (const a of this.acts.values()) {
      depth += a.queue.depth;
      max = Math.max(max, a.queue.depth);
      if (a.state === 'active' && a.queue.isIdle() && (this.appDown || now - a.lastUsed >= this.opts.idleTimeoutMs) && !this.draining) {
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
   * Graceful stop (idempotent): stop being placeable while still serving,
   * then refuse new work (callers retry elsewhere, nothing ran), finish what
   * is queued, release each object once its queue is empty, leave,
   * unsubscribe.
   */
  drain(): Promise<void> {
    this.drained ??= this.drainOnce();
    return this.drained;
  }

  private async drainOnce(): Promise<void> {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    if (this.replicaTimer !== undefined) clearInterval(this.replicaTimer);
    if (this.appTimer !== undefined) clearInterval(this.appTimer);
    // Not placeable first, and long enough for the callers' views to poll it (every TTL/4), while this host
    // still serves what it owns: new objects stop coming here before anything is refused.
    await this.heartbeat.drain();
    await sleep(this.opts.timing.ttl / 4 + this.opts.timing.margin);
    this.draining = true;
    // Door requests (callers of other namespaces) go to the other hosts from now on.
    this.doorSub?.unsubscribe();
    // Each object moves as soon as its own queued turns are done; a handler still running keeps its object here
    // (never released under a running handler) up to the longer of drainTimeout and turnTimeout.
    const waitMs = Math.max(this.opts.drainTimeoutMs, this.opts.turnTimeoutMs);
    const late = new Promise<void>((r) => setTimeout(r, waitMs).unref());
    // Every activation is here: a claim that starts from now on answers `retry` (claim checks draining).
    await Promise.all(
      [...this.acts.values()].map(async (a) => {
        await Promise.race([Promise.all([a.ready, a.queue.whenIdle()]), late]);
        await this.release(a);
      }),
    );
    await this.heartbeat.leave();
    this.log.info('object host drained', { cls: this.opts.cls });
    await Promise.race([Promise.all([...this.inflight]), new Promise((r) => setTimeout(r, 1_000).unref())]);
    await this.sub?.drain().catch(() => undefined);
  }

  /** Hard stop (tests): no release, no leave; the lease runs out. */
  stop(): void {
    this.stopped = true;
    this.heartbeat.stop();
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    if (this.replicaTimer !== undefined) clearInterval(this.replicaTimer);
    if (this.appTimer !== undefined) clearInterval(this.appTimer);
    this.sub?.unsubscribe();
    this.doorSub?.unsubscribe();
  }
}
