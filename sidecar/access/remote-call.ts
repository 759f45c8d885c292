/**
 * Calling an object of ANOTHER namespace (docs/security.md §3): the caller
 * side of `castellan-namespace: <ns>` on `/v1/objects/...`.
 *
 * With the auth callout a caller's connection lives in its own namespace's
 * NATS account: it cannot read the target namespace's host records or owner
 * records (router.ts needs both), and should not. So a cross-namespace call
 * goes to the class's door (`<prefix>.rpc.<ns>.<class>._.<caller>`, one host
 * of the class in a queue group), and that host serves it, claims the object,
 * or redirects to the owner (host.ts, lease.ts decideClaim), whose RPC
 * subject the caller then uses directly and remembers. The subjects reach the
 * target account only through a service import the NATS administrator
 * configured; the target's host then checks `spec.access.callers` against
 * the caller the subject names (common/access.ts) and answers 403 FORBIDDEN.
 *
 * Retries follow the router's rule: only when the request certainly did not
 * run (no responders; `retry` and `redirect` replies), with the same request
 * id; a timeout after sending is 504 and not retried.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { isNamespaceName, type CallerIdentity } from '../../common/access.ts';
import { CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { isNoResponders } from '../nats-errors.ts';
import type { Invocation, InvocationResult } from '../objects/router.ts';
import { nextBackoff, OwnerCache } from '../objects/owner-cache.ts';
import { classNames, encodeId, isValidClassName } from '../objects/subjects.ts';
import { decodeEnvelope, encodeEnvelope, type ReplyMeta, type RequestMeta } from '../objects/wire.ts';

export interface RemoteCallOptions {
  prefix: string;
  caller: CallerIdentity;
  requestTimeoutMs: number;
  /** How long to keep trying when no host of the class answers (ms). */
  unavailableWaitMs: number;
  maxRedirects: number;
  maxBodyBytes: number;
}

export class RemoteObjects {
  private readonly nc: NatsConnection;
  private readonly opts: RemoteCallOptions;
  private readonly log: Logger;
  /** `ns\0class\0encId` → owner pod, from the last reply. */
  private readonly owners = new OwnerCache();

  constructor(nc: NatsConnection, opts: RemoteCallOptions, log: Logger) {
    this.nc = nc;
    this.opts = opts;
    this.log = log;
  }

  async invoke(namespace: string, inv: Invocation): Promise<InvocationResult> {
    if (!isNamespaceName(namespace)) throw Errors.badRequest(`castellan-namespace "${namespace}" is not a namespace name.`, 'INVALID_NAMESPACE');
    if (inv.body.length > this.opts.maxBodyBytes) {
      throw Errors.payloadTooLarge(`Request body is ${inv.body.length} bytes; objects accept at most ${this.opts.maxBodyBytes}.`);
    }
    if (!isValidClassName(inv.cls)) throw Errors.classNotFound(inv.cls);
    const names = classNames(this.opts.prefix, namespace, inv.cls);
    const what = `${namespace}/${inv.cls}/${inv.id}`;
    const cacheKey = `${namespace}\0${inv.cls}\0${encodeId(inv.id)}`;
    const started = performance.now();
    const deadline = started + this.opts.requestTimeoutMs;
    let target = this.owners.get(cacheKey);
    let redirects = 0;
    let backoff = 0;
    let noHostSince: number | undefined;
    let lastReason = `no host of ${namespace}/${inv.cls} answers`;
    for (;;) {
      const now = performance.now();
      const remaining = deadline - now;
      if (remaining <= 0) throw Errors.unavailable(`Object ${what} is unavailable: ${lastReason}.`, 'OBJECT_UNAVAILABLE');
      const meta: RequestMeta = { v: 1, cls: inv.cls, id: inv.id, method: inv.method, path: inv.path, query: inv.query, headers: inv.headers, rid: inv.rid, timeoutMs: Math.max(1, Math.floor(remaining)) };
      const subject = target === undefined ? names.door(this.opts.caller) : names.rpc(target, this.opts.caller);
      let data: Uint8Array;
      try {
        data = (await this.nc.request(subject, encodeEnvelope(meta, inv.body), { timeout: Math.max(1, Math.floor(remaining)) })).data;
      } catch (err) {
        const text = describeError(err);
        if (isNoResponders(err)) {
          // Not delivered: safe to try again (the door, or the door again after a while).
          if (target !== undefined) {
            this.owners.forget(cacheKey);
            target = undefined;
            continue;
          }
          noHostSince ??= now;
          if (now - noHostSince >= this.opts.unavailableWaitMs) {
            throw Errors.unavailable(
              `Object ${what} is unavailable: no host of DurableObject ${namespace}/${inv.cls} answers (it does not exist, has no ready host, or NATS does not route namespace ${this.opts.caller.namespace}'s calls to namespace ${namespace}: a service import, docs/security.md §3).`,
              'OBJECT_UNAVAILABLE',
            );
          }
          backoff = nextBackoff(backoff);
          await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          continue;
        }
        if (/permissions violation/i.test(text)) {
          throw new CastellanError(403, 'FORBIDDEN', `NATS refused this sidecar's call to ${what} as ${this.opts.caller.namespace}/${this.opts.caller.serviceAccount}: ${text}`);
        }
        if (/timeout/i.test(text)) {
          throw Errors.timeout(`Object ${what} did not answer within ${this.opts.requestTimeoutMs} ms; it may or may not have processed the request.`, 'OBJECT_TIMEOUT');
        }
        throw Errors.unavailable(`Forwarding to object ${what} failed: ${text}`, 'OBJECT_UNAVAILABLE', err);
      }
      noHostSince = undefined;
      const { meta: reply, body } = decodeEnvelope<ReplyMeta>(data);
      switch (reply.t) {
        case 'ok':
          this.owners.remember(cacheKey, reply.pod);
          return { status: reply.status, headers: reply.headers, body, pod: reply.pod };
        case 'error':
          throw new CastellanError(reply.status, reply.code, reply.message, { retryable: reply.retryable });
        case 'redirect':
          if (++redirects > this.opts.maxRedirects) throw Errors.unavailable(`Object ${what} is unavailable: ownership is moving (too many redirects).`, 'OBJECT_UNAVAILABLE');
          this.owners.remember(cacheKey, reply.pod);
          target = reply.pod;
          if (redirects > 2) {
            backoff = nextBackoff(backoff);
            await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          }
          continue;
        case 'retry':
          lastReason = `host ${target ?? '(door)'}: ${reply.reason}`;
          this.owners.forget(cacheKey);
          target = undefined;
          backoff = nextBackoff(backoff);
          this.log.debug('retrying remote object request', { namespace, cls: inv.cls, id: inv.id, reason: reply.reason });
          await sleep(Math.min(backoff, Math.max(0, deadline - performance.now())));
          continue;
      }
    }
  }

}
