/**
 * HTTP surface of replicated queues (SPEC §2.3), served by every sidecar.
 * Thin: validate with zod, call the queue, shape the answer. A request naming
 * another namespace (`castellan-namespace: <ns>`, an extension like object
 * calls', docs/security.md §3) goes to that queue's door
 * (sidecar/access/remote-queues.ts); otherwise the local QueueClient serves it.
 */
import express, { Router as ExpressRouter, type NextFunction, type Request, type Response } from 'express';
import type { ZodType } from 'zod';
import { asCastellanError, Errors, fromZod } from '../../common/errors.ts';
import { batchDeleteSchema, batchSendSchema, receiveSchema, sendSchema, visibilitySchema } from './api.ts';
import type { RemoteQueues } from '../access/remote-queues.ts';
import type { OutMessage, QueueClient, ReceiveInput } from './client.ts';
import type { SendBody } from './api.ts';
import { forEachLimit } from './host.ts';
import type { QueueMetrics } from './metrics.ts';

function parse<T>(schema: ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body === undefined ? {} : body);
  if (!r.success) throw fromZod(r.error, what);
  return r.data;
}

/** What a route does with one queue: through the local client (own namespace) or another namespace's door. */
interface QueueOps {
  /** Resolves when the queue exists (404 QUEUE_NOT_FOUND otherwise). */
  exists(): Promise<unknown>;
  send(body: SendBody): Promise<{ messageId: string; replicas: string[] }>;
  receive(body: ReceiveInput): Promise<OutMessage[]>;
  delete(handle: string): Promise<void>;
  changeVisibility(handle: string, seconds: number): Promise<void>;
  describe(): Promise<Record<string, unknown>>;
  purge(): Promise<number>;
}

function localOps(client: QueueClient, queue: string): QueueOps {
  return {
    exists: () => client.queue(queue),
    send: (body) => client.send(queue, body),
    receive: (body) => client.receive(queue, body),
    delete: (handle) => client.delete(queue, handle),
    changeVisibility: (handle, seconds) => client.changeVisibility(queue, handle, seconds),
    describe: () => client.describe(queue),
    purge: () => client.purge(queue),
  };
}

/** The door answers with what the queue's own client returned there (sidecar/queues/door.ts). */
function remoteOps(remote: RemoteQueues, namespace: string, queue: string): QueueOps {
  return {
    exists: () => remote.call(namespace, queue, { op: 'describe' }),
    send: async (body) => (await remote.call(namespace, queue, { op: 'send', body })) as { messageId: string; replicas: string[] },
    receive: async (body) => (await remote.call(namespace, queue, { op: 'receive', body })) as OutMessage[],
    delete: async (handle) => {
      await remote.call(namespace, queue, { op: 'delete', handle });
    },
    changeVisibility: async (handle, seconds) => {
      await remote.call(namespace, queue, { op: 'visibility', handle, seconds });
    },
    describe: async () => (await remote.call(namespace, queue, { op: 'describe' })) as Record<string, unknown>,
    purge: async () => (await remote.call(namespace, queue, { op: 'purge' })) as number,
  };
}

export function queueRoutes(client: QueueClient, metrics: QueueMetrics, remote?: { namespace: string; queues: RemoteQueues }): ExpressRouter {
  const r = ExpressRouter();
  const opsFor = (req: Request): QueueOps => {
    const queue = String(req.params.queue);
    const ns = req.headers['castellan-namespace'];
    if (typeof ns === 'string' && ns !== '' && remote !== undefined && ns !== remote.namespace) return remoteOps(remote.queues, ns, queue);
    return localOps(client, queue);
  };
  // Any content type is read as JSON; 16 MiB covers a batch of large messages (each is checked against maxMessageBytes).
  const json = express.json({ limit: '16mb', type: () => true, strict: false });

  const count = (op: string) => (req: Request, res: Response, next: NextFunction) => {
    res.on('finish', () => metrics.requests.inc({ queue: String(req.params.queue ?? ''), op, outcome: String(res.statusCode) }));
    next();
  };

  r.post('/v1/queues/:queue/messages', count('send'), json, async (req, res) => {
    const body = parse(sendSchema, req.body, 'message');
    const out = await opsFor(req).send(body);
    res.status(201).json(out);
  });

  r.post('/v1/queues/:queue/receive', count('receive'), json, async (req, res) => {
    const body = parse(receiveSchema, req.body, 'receive request');
    const messages = await opsFor(req).receive(body);
    res.json({ messages });
  });

  r.delete('/v1/queues/:queue/messages/:handle', count('delete'), async (req, res) => {
    await opsFor(req).delete(String(req.params.handle));
    res.status(204).end();
  });

  r.post('/v1/queues/:queue/visibility', count('visibility'), json, async (req, res) => {
    const body = parse(visibilitySchema, req.body, 'visibility request');
    await opsFor(req).changeVisibility(body.receiptHandle, body.visibilityTimeoutSeconds);
    res.status(204).end();
  });

  r.post('/v1/queues/:queue/batch/send', count('batch_send'), json, async (req, res) => {
    const body = parse(batchSendSchema, req.body, 'batch send request');
    const ops = opsFor(req);
    await ops.exists(); // 404 for the whole batch when the queue does not exist
    const successful: { id: string; messageId: string; replicas: string[] }[] = [];
    const failed: { id: string; status: number; code: string; message: string; retryable: boolean }[] = [];
    await forEachLimit(body.entries, 16, async ({ id, ...entry }) => {
      try {
        successful.push({ id, ...(await ops.send(entry)) });
      } catch (err) {
        const e = asCastellanError(err);
        failed.push({ id, status: e.status, code: e.code, message: e.message, retryable: e.retryable });
      }
    });
    res.json({ successful, failed });
  });

  r.post('/v1/queues/:queue/batch/delete', count('batch_delete'), json, async (req, res) => {
    const body = parse(batchDeleteSchema, req.body, 'batch delete request');
    const ops = opsFor(req);
    await ops.exists();
    const successful: { id: string }[] = [];
    const failed: { id: string; status: number; code: string; message: string; retryable: boolean }[] = [];
    await forEachLimit(body.entries, 16, async ({ id, receiptHandle }) => {
      try {
        await ops.delete(receiptHandle);
        successful.push({ id });
      } catch (err) {
        const e = asCastellanError(err);
        failed.push({ id, status: e.status, code: e.code, message: e.message, retryable: e.retryable });
      }
    });
    res.json({ successful, failed });
  });

  r.get('/v1/queues/:queue', count('describe'), async (req, res) => {
    res.json(await opsFor(req).describe());
  });

  r.post('/v1/queues/:queue/purge', count('purge'), async (req, res) => {
    const purged = await opsFor(req).purge();
    res.json({ purged });
  });

  const notAllowed = (allow: string) => (req: Request) => {
    throw Errors.methodNotAllowed(`${req.method} is not supported here; use ${allow}.`);
  };
  r.all('/v1/queues/:queue/messages', notAllowed('POST'));
  r.all('/v1/queues/:queue/messages/:handle', notAllowed('DELETE'));
  r.all('/v1/queues/:queue/receive', notAllowed('POST'));
  r.all('/v1/queues/:queue/visibility', notAllowed('POST'));
  r.all('/v1/queues/:queue/batch/send', notAllowed('POST'));
  r.all('/v1/queues/:queue/batch/delete', notAllowed('POST'));
  r.all('/v1/queues/:queue/purge', notAllowed('POST'));
  r.all('/v1/queues/:queue', notAllowed('GET'));
  return r;
}
