/**
 * The caller side of object invocation (every sidecar role): find the owner
 * host, forward over NATS, follow redirects, and retry — but only when the
 * request certainly did not run.
 *
 * Target choice: the cached owner if it is still reachable in this sidecar's
 * view, else the rendezvous winner among placeable hosts (placement.ts). The
 * host is the authority: it serves, claims, or redirects (host.ts).
 *
 * Safe retries: NATS "no responders" (nobody subscribed: the request was not
 * delivered), and `retry` / `redirect` replies (the host refused before
 * running the app: draining, not the owner, lease not valid, the app not
 * accepting connections) are retried with backoff until the deadline, with
 * the same request id (hosts de-duplicate by id). A draining host is avoided
 * for new placements; a redirect back to it (it still owns the object until
 * its queued turns are done) backs off. A timeout after sending is NOT
 * retried: the request may have run; the caller gets 504 OBJECT_TIMEOUT.
 * Except when the host died before it took the request: hosts acknowledge
 * receipt before anything of a request can run (call-channel.ts), so a call
 * whose host is lost (fenced, expired, restarted) without a receipt never
 * ran there and is sent elsewhere, transparently, with the same request id.
 *
 * Local calls: when the target is this sidecar's own object host (the app
 * calling an object its pod owns), the request goes to that host in process
 * (`LocalHost`): the same access decision, de-duplication, turn queue and
 * replies as over NATS, without the NATS round trip or envelope coding.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { CallerIdentity } from '../../common/access.ts';
import { CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { ClassView, Membership } from './membership.ts';
import type { ObjectMetrics } from './metrics.ts';
import type { ObjectStore } from './ownership-store.ts';
import { lostInFlight } from './lease.ts';
import { rendezvous } from './placement.ts';
import { encodeId, isValidClassName } from './subjects.ts';
import { decodeEnvelope, EARLIER_SESSION, encodeEnvelope, type HeaderList, type ReplyMeta, type RequestMeta } from './wire.ts';
import { nextBackoff, OwnerCache } from './owner-cache.ts';
import { isNoResponders } from '../nats-errors.ts';
import { CallChannel, CallTimeout, NotDelivered, type Call } from './call-channel.ts';

/** A call to forward: the wire request fields the caller knows, plus the body. */
export type Invocation = Omit<RequestMeta, 'v' | 'timeoutMs'> & { body: Uint8Array };

export interface InvocationResult {
  status: number;
  headers: HeaderList;
  body: Uint8Array;
  /** Host that served it. */
  pod: string;
}

export interface RouterOptions {
  requestTimeoutMs: number;
  /** How long to wait for some host of the class to become available before 503 (ms). */
  unavailableWaitMs: number;
  maxRedirects: number;
  /** Largest request body (bytes); larger → 413. */
  maxBodyBytes: number;
  /** Who this sidecar is: named in every call subject (common/access.ts). */
  caller: CallerIdentity;
}


/** The object host in this sidecar (host.ts): calls to its class that target its pod are served in process. */
export interface LocalHost {
  readonly cls: string;
  readonly pod: string;
  /** Serves a request as if it came over NATS from `caller`; the reply is the one the host would have sent. */
  serveLocal(meta: RequestMeta, body: Uint8Array, caller: CallerIdentity): Promise<{ meta: ReplyMeta; body?: Uint8Array }>;
}

export class Router {
  private readonly nc: NatsConnection;
  private readonly store: ObjectStore;
  private readonly membership: Membership;
  private readonly metrics: ObjectMetrics;
  private readonly opts: RouterOptions;
  private readonly log: Logger;
  /** `class\0encId` → owner pod, from the last reply. */
  private readonly owners = new OwnerCache();
  private local: LocalHost | undefined;
  private readonly channel: CallChannel;

  constructor(nc: NatsConnection, store: ObjectStore, membership: Membership, metrics: ObjectMetrics, opts: RouterOptions, log: Logger) {
    this.nc = nc;
    this.store = store;
    this.membership = membership;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
    this.channel = new CallChannel(nc);
  }

  /** Serves calls to `host`'s class that target its pod in process (set once the host has started). */
  attachLocal(host: LocalHost): void {
    this.local = host;
  }

  get maxBodyBytes(): number {
    return this.opts.maxBodyBytes;
  }

  async invoke(inv: Invocation): Promise<InvocationResult> {
    const started = performance.now();
    try {
      const r = await this.route(inv, started);
      this.metrics.requests.inc({ class: inv.cls, outcome: `${Math.floor(r.status / 100)}xx` });
      return r;
    } catch (err) {
      this.metrics.requests.inc({ class: inv.cls, outcome: err instanceof CastellanError ? err.code : 'INTERNAL' });
      throw err;
    } finally {
      this.metrics.latency.observe({ class: inv.cls }, (performance.now() - started) / 1000);
    }
  }

  private async route(inv: Invocation, started: number): Promise<InvocationResult> {
    if (inv.body.length > this.opts.maxBodyBytes) {
      throw Errors.payloadTooLarge(`Request body is ${inv.body.length} bytes; objects accept at most ${this.opts.maxBodyBytes}.`);
    }
    if (!isValidClassName(inv.cls)) throw Errors.classNotFound(inv.cls);
    let exists: boolean;
    try {
      exists = await this.store.classExists(inv.cls);
    } catch (err) {
      throw Errors.unavailable(`Cannot look up class "${inv.cls}": ${describeError(err)}`, 'OBJECT_UNAVAILABLE', err);
    }
    if (!exists) throw Errors.classNotFound(inv.cls);

    const view = this.membership.view(inv.cls);
    await view.whenReady();
    const names = this.store.names(inv.cls);
    const encId = encodeId(inv.id);
    const cacheKey = `${inv.cls}\0${encId}`;
    const deadline = started + this.opts.requestTimeoutMs;
    const avoid = new Map<string, number>();
    let redirectTo: string | undefined;
    let redirects = 0;
    let backoff = 0;
    let noHostSince: number | undefined;
    let lastReason = 'no host of the class is available';
    let kind: 'first' | 'redirect' | 'retry' = 'first';

    for (;;) {
      const now = performance.now();
      const remaining = deadline - now;
      if (remaining <= 0) throw Errors.unavailable(`Object ${inv.cls}/${inv.id} is unavailable: ${lastReason}.`, 'OBJECT_UNAVAILABLE');
      for (const [pod, until] of avoid) if (until <= now) avoid.delete(pod);

      let target = redirectTo;
      redirectTo = undefined;
      if (target !== undefined && !view.reachable(target)) {
        // Redirected to a host this caller sees as gone (lease expired, fenced): the redirecting host's view is
        // behind. Ask again after a while (it fences and takes over once it sees the same) instead of sending a
        // request that nobody will take.
        await view.refresh();
        if (!view.reachable(target)) {
          lastReason = `host ${target}, named as the owner, is not alive`;
          redirects--;
          kind = 'retry';
          backoff = nextBackoff(backoff);
          await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          continue;
        }
      }
      if (target === undefined) {
        const cached = this.owners.get(cacheKey);
        if (cached !== undefined && view.reachable(cached) && !avoid.has(cached)) target = cached;
      }
      target ??= rendezvous(view.placeable(new Set(avoid.keys())), encId);
      if (target === undefined) {
        noHostSince ??= now;
        if (now - noHostSince >= this.opts.unavailableWaitMs) {
          throw Errors.unavailable(`Object ${inv.cls}/${inv.id} is unavailable: ${lastReason}.`, 'OBJECT_UNAVAILABLE');
        }
        backoff = nextBackoff(backoff);
        await sleep(Math.min(backoff, remaining));
        await view.refresh();
        continue;
      }
      noHostSince = undefined;

      const meta: RequestMeta = {
        v: 1,
        cls: inv.cls,
        id: inv.id,
        method: inv.method,
        path: inv.path,
        query: inv.query,
        headers: inv.headers,
        rid: inv.rid,
        timeoutMs: Math.max(1, Math.floor(remaining)),
        ack: true,
      };
      const session = view.host(target)?.record.sessionId;
      if (session !== undefined) meta.session = session;
      const local = this.local !== undefined && this.local.cls === inv.cls && this.local.pod === target ? this.local : undefined;
      this.metrics.forwards.inc({ class: inv.cls, kind: local === undefined ? kind : 'local' });
      let reply: ReplyMeta;
      let body: Uint8Array;
      try {
        if (local !== undefined) {
          const r = await withDeadline(local.serveLocal(meta, inv.body, this.opts.caller), remaining);
          reply = r.meta;
          body = r.body ?? new Uint8Array(0);
        } else {
          const call = this.channel.request(names.rpc(target, this.opts.caller), encodeEnvelope(meta, inv.body), remaining);
          ({ meta: reply, body } = decodeEnvelope<ReplyMeta>(await this.unlessHostDies(call, view, target, meta.session)));
        }
      } catch (err) {
        if (err instanceof CastellanError) throw err;
        const text = describeError(err);
        if (err instanceof NotDelivered || isNoResponders(err)) {
          // Not delivered to anyone, or its host died before taking it: safe to try another host.
          lastReason = `host ${target} is not answering`;
          if (err instanceof HostDiedBeforeReceipt) this.log.info('object host died before taking a call; sending it elsewhere', { cls: inv.cls, id: inv.id, host: target });
          this.owners.forget(cacheKey);
          avoid.set(target, performance.now() + 1_000);
          kind = 'retry';
          backoff = nextBackoff(backoff);
          await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          continue;
        }
        if (err instanceof DeadlinePassed || err instanceof CallTimeout || /timeout/i.test(text)) {
          throw Errors.timeout(`Object ${inv.cls}/${inv.id} did not answer within ${this.opts.requestTimeoutMs} ms; it may or may not have processed the request.`, 'OBJECT_TIMEOUT');
        }
        throw Errors.unavailable(`Forwarding to object ${inv.cls}/${inv.id} failed: ${text}`, 'OBJECT_UNAVAILABLE', err);
      }
      switch (reply.t) {
        case 'ok':
          this.owners.remember(cacheKey, reply.pod);
          return { status: reply.status, headers: reply.headers, body, pod: reply.pod };
        case 'error':
          throw new CastellanError(reply.status, reply.code, reply.message, { retryable: reply.retryable });
        case 'redirect':
          if (++redirects > this.opts.maxRedirects) {
            throw Errors.unavailable(`Object ${inv.cls}/${inv.id} is unavailable: ownership is moving (too many redirects).`, 'OBJECT_UNAVAILABLE');
          }
          this.owners.remember(cacheKey, reply.pod);
          redirectTo = reply.pod;
          kind = 'redirect';
          // Back to a host that just answered `draining`: it still owns the object until its queue is done; back off.
          if (redirects > 2 || avoid.has(reply.pod)) {
            backoff = nextBackoff(backoff);
            await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          }
          continue;
        case 'retry':
          lastReason = `host ${target}: ${reply.reason}`;
          this.owners.forget(cacheKey);
          if (reply.reason === 'draining') avoid.set(target, performance.now() + 5_000);
          // The host is in a newer session than this caller's view: learn it before asking again.
          if (reply.reason === EARLIER_SESSION) await view.refresh();
          redirects = 0;
          kind = 'retry';
          backoff = nextBackoff(backoff);
          this.log.debug('retrying object request', { cls: inv.cls, id: inv.id, host: target, reason: reply.reason });
          await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          continue;
      }
    }
  }

  /**
   * Resolves with the reply, or fails early when the host that has the
   * request can no longer answer it (lease.ts lostInFlight: fenced, expired,
   * or restarted) before answering: with NotDelivered when it never
   * acknowledged taking the request (it never ran; the caller sends it
   * elsewhere; the request names `session`, so that host refuses it if it
   * takes it later in another session, host.ts), else with 504 (it may have
   * run; not retried). Either way the
   * caller need not wait for the full timeout. The view is refreshed before
   * giving up, so a view that merely fell behind (a busy event loop) never
   * fails a request a live host is working on.
   */
  private unlessHostDies(call: Call, view: ClassView, pod: string, session: string | undefined): Promise<Uint8Array> {
    if (!view.reachable(pod)) return call.reply;
    let checking = false;
    const lost = () => lostInFlight(view.host(pod), session, performance.now(), view.timing);
    const timer = setInterval(() => {
      if (checking || !lost()) return;
      checking = true;
      void view
        .refresh()
        .then(() => {
          if (!lost()) return;
          call.abandon(
            call.received()
              ? Errors.timeout(`The host running the object stopped before answering (pod ${pod}); the request may or may not have been processed.`, 'OBJECT_TIMEOUT')
              : new HostDiedBeforeReceipt(`host ${pod} stopped before taking the request`),
          );
        })
        .catch(() => undefined)
        .finally(() => {
          checking = false;
        });
    }, 100);
    return call.reply.finally(() => clearInterval(timer));
  }

}

/** The host was lost before it acknowledged the request: it never ran there. */
class HostDiedBeforeReceipt extends NotDelivered {}

class DeadlinePassed extends Error {}

/** `p`, or a DeadlinePassed rejection after `ms` (the work behind `p` goes on: a turn ends when the app answers). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlinePassed('deadline passed')), Math.max(1, Math.floor(ms)));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
