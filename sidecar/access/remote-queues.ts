/**
 * Using a queue of ANOTHER namespace (docs/security.md §3): the caller side
 * of `castellan-namespace: <ns>` on `/v1/queues/...`. The whole operation
 * goes to the queue's door (sidecar/queues/door.ts), where a host of that
 * queue checks `spec.access.callers` against the caller its subject names
 * and runs it; with the auth callout the subject reaches the other account
 * only through a service import the NATS administrator configured.
 *
 * Nothing is retried here: a door request that reached no host (no
 * responders) certainly did not run and is answered 503 at once; one that
 * was not answered in time may have run (504).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { isNamespaceName, type CallerIdentity } from '../../common/access.ts';
import { CastellanError, Errors } from '../../common/errors.ts';
import { describeError } from '../../common/logger.ts';
import type { DoorReply, DoorRequest } from '../queues/door.ts';
import { isValidQueueName, queueNames } from '../queues/names.ts';
import { decodeJson, encodeJson } from '../queues/wire.ts';
import { isNoResponders } from '../nats-errors.ts';

export interface RemoteQueueOptions {
  prefix: string;
  caller: CallerIdentity;
  requestTimeoutMs: number;
}

export class RemoteQueues {
  private readonly nc: NatsConnection;
  private readonly opts: RemoteQueueOptions;

  constructor(nc: NatsConnection, opts: RemoteQueueOptions) {
    this.nc = nc;
    this.opts = opts;
  }

  /** Runs `req` on queue `namespace`/`queue` through its door; its result, or its error as a CastellanError. */
  async call(namespace: string, queue: string, req: DoorRequest): Promise<unknown> {
    if (!isNamespaceName(namespace)) throw Errors.badRequest(`castellan-namespace "${namespace}" is not a namespace name.`, 'INVALID_NAMESPACE');
    if (!isValidQueueName(queue)) throw Errors.notFound(`No ReplicatedQueue "${queue}" (not a valid queue name).`, 'QUEUE_NOT_FOUND');
    const what = `${namespace}/${queue}`;
    // A long poll holds the door request for its wait.
    const timeout = this.opts.requestTimeoutMs + (req.op === 'receive' ? req.body.waitSeconds * 1000 : 0);
    let data: Uint8Array;
    try {
      data = (await this.nc.request(queueNames(this.opts.prefix, namespace, queue).door(this.opts.caller), encodeJson(req), { timeout })).data;
    } catch (err) {
      const text = describeError(err);
      if (isNoResponders(err)) {
        throw Errors.unavailable(
          `Queue ${what} is unavailable: no queue host of it answers (it does not exist, has no ready host, or NATS does not route namespace ${this.opts.caller.namespace}'s calls to namespace ${namespace}: a service import, docs/security.md §3).`,
          'QUEUE_UNAVAILABLE',
        );
      }
      if (/permissions violation/i.test(text)) {
        throw new CastellanError(403, 'FORBIDDEN', `NATS refused this sidecar's call to queue ${what} as ${this.opts.caller.namespace}/${this.opts.caller.serviceAccount}: ${text}`);
      }
      if (/timeout/i.test(text)) throw Errors.timeout(`Queue ${what} did not answer ${req.op} within ${timeout} ms; it may or may not have been done.`, 'QUEUE_TIMEOUT');
      throw Errors.unavailable(`Calling queue ${what} failed: ${text}`, 'QUEUE_UNAVAILABLE', err);
    }
    let reply: DoorReply;
    try {
      reply = decodeJson<DoorReply>(data);
    } catch {
      throw Errors.unavailable(`Queue ${what} gave an unreadable answer.`, 'QUEUE_UNAVAILABLE');
    }
    if (!reply.ok) throw new CastellanError(reply.status, reply.code, reply.message, { retryable: reply.retryable });
    return reply.result;
  }
}
