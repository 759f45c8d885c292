/**
 * A queue's door (docs/security.md §3): how callers of OTHER namespaces use a
 * queue whose `spec.access.callers` lets them.
 *
 * A caller in another namespace cannot read this queue's meta stream (with
 * the auth callout its NATS account holds only its own namespace), so it
 * cannot pick hosts or follow replicas itself. It sends the whole API
 * operation to the door, `<prefix>.qrpc.<ns>.<queue>._.<callerNs>.<callerSa>`
 * (names.ts), which every queue host of the queue serves in one queue group;
 * the host that takes it decides access from the caller its subject names
 * (common/access.ts, the same rule as direct host calls) and runs the
 * operation with its own queue client, exactly as its own sidecar's API
 * would: replication, receipts, visibility and dead-lettering are the
 * queue's, and receipt handles stay signed with the queue's key (the caller
 * only passes them back). The operation is validated here again: the door is
 * a boundary.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import { decideAccess, identityFromSubject, type AccessPolicy } from '../../common/access.ts';
import { asCastellanError, Errors, fromZod } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { receiveSchema, sendSchema } from './api.ts';
import type { QueueClient } from './client.ts';
import type { QueueNames } from './names.ts';
import { LIMITS } from './spec.ts';
import { decodeJson, encodeJson } from './wire.ts';

/** Queue group of a queue's door subscriptions: one host takes each door request. */
export const queueDoorGroup = 'door';

export const doorRequestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('send'), body: sendSchema }),
  z.object({ op: z.literal('receive'), body: receiveSchema }),
  z.object({ op: z.literal('delete'), handle: z.string().min(1) }),
  z.object({ op: z.literal('visibility'), handle: z.string().min(1), seconds: z.number().int().min(0).max(LIMITS.maxVisibilitySeconds) }),
  z.object({ op: z.literal('describe') }),
  z.object({ op: z.literal('purge') }),
]);
export type DoorRequest = z.infer<typeof doorRequestSchema>;

export type DoorReply = { ok: true; result?: unknown } | { ok: false; status: number; code: string; message: string; retryable: boolean };

export class QueueDoor {
  private readonly nc: NatsConnection;
  private readonly queue: string;
  private readonly names: QueueNames;
  private readonly client: QueueClient;
  private readonly access: AccessPolicy;
  private readonly log: Logger;
  private sub: Subscription | undefined;

  constructor(nc: NatsConnection, queue: string, names: QueueNames, client: QueueClient, access: AccessPolicy, log: Logger) {
    this.nc = nc;
    this.queue = queue;
    this.names = names;
    this.client = client;
    this.access = access;
    this.log = log;
  }

  start(): void {
    this.sub = this.nc.subscribe(this.names.doorServe, {
      queue: queueDoorGroup,
      callback: (err, msg) => {
        if (err !== null) {
          this.log.warn('queue door subscription error', { error: describeError(err) });
          return;
        }
        void this.answer(msg).then(
          (reply) => msg.respond(encodeJson(reply)),
          (e: unknown) => this.log.error('answering a door request failed', { error: describeError(e) }),
        );
      },
    });
  }

  private async answer(msg: Msg): Promise<DoorReply> {
    try {
      const caller = identityFromSubject(msg.subject);
      if (caller === undefined) throw Errors.badRequest(`The call subject ${msg.subject} names no caller.`);
      const allowed = decideAccess(this.access, caller, 'ReplicatedQueue', this.queue);
      if (allowed !== true) {
        this.log.info('door call refused', { caller, code: allowed.code });
        throw allowed;
      }
      let raw: unknown;
      try {
        raw = decodeJson<unknown>(msg.data);
      } catch {
        throw Errors.badRequest('The door request is not JSON.');
      }
      const parsed = doorRequestSchema.safeParse(raw);
      if (!parsed.success) throw fromZod(parsed.error, 'door request');
      return { ok: true, result: await this.run(parsed.data) };
    } catch (err) {
      const e = asCastellanError(err);
      return { ok: false, status: e.status, code: e.code, message: e.message, retryable: e.retryable };
    }
  }

  private async run(req: DoorRequest): Promise<unknown> {
    switch (req.op) {
      case 'send':
        return this.client.send(this.queue, req.body);
      case 'receive':
        return this.client.receive(this.queue, req.body);
      case 'delete':
        return this.client.delete(this.queue, req.handle);
      case 'visibility':
        return this.client.changeVisibility(this.queue, req.handle, req.seconds);
      case 'describe':
        return this.client.describe(this.queue);
      case 'purge':
        return this.client.purge(this.queue);
    }
  }

  /** Other hosts take the door's requests from now on. */
  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
  }
}
