/**
 * HTTP surface of replicated queues (SPEC §2.3), served by every sidecar.
 * Thin: validate with zod, call the QueueClient, shape the answer.
 */
import express, { Router as ExpressRouter, type NextFunction, type Request, type Response } from 'express';
import type { ZodType } from 'zod';
import { asCastellanError, Errors, fromZod } from '../../common/errors.ts';
import { batchDeleteSchema, batchSendSchema, receiveSchema, sendSchema, visibilitySchema } from './api.ts';
import type { QueueClient } from './client.ts';
import { forEachLimit } from './host.ts';
import type { QueueMetrics } from './metrics.ts';

function parse<T>(schema: ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body === undefined ? {} : body);
  if (!r.success) throw fromZod(r.error, what);
  return r.data;
}

export function queueRoutes(client: QueueClient, metrics: QueueMetrics): ExpressRouter {
  const r = ExpressRouter();
  // Any content type is read as JSON; 16 MiB covers a batch of large messages (each is checked against maxMessageBytes).
  const json = express.json({ limit: '16mb', type: () => true, strict: false });

  const count = (op: string) => (req: Request, res: Response, next: NextFunction) => {
    res.on('finish', () => metrics.requests.inc({ queue: String(req.params.queue ?? ''), op, outcome: String(res.statusCode) }));
    next();
  };

  r.post('/v1/queues/:queue/messages', count('send'), json, async (req, res) => {
    const body = parse(sendSchema, req.body, 'message');
    const out = await client.send(String(req.params.queue), body);
    res.status(201).json(out);
  });

  r.post('/v1/queues/:queue/receive', count('receive'), json, async (req, res) => {
    const body = parse(receiveSchema, req.body, 'receive request');
    const messages = await client.receive(String(req.params.queue), body);
    res.json({ messages });
  });

  r.delete('/v1/queues/:queue/messages/:handle', count('delete'), async (req, res) => {
    await client.delete(String(req.params.queue), String(req.params.handle));
    res.status(204).end();
  });

  r.post('/v1/queues/:queue/visibility', count('visibility'), json, async (req, res) => {
    const body = parse(visibilitySchema, req.body, 'visibility request');
    await client.changeVisibility(String(req.params.queue), body.receiptHandle, body.visibilityTimeoutSeconds);
    res.status(204).end();
  });

  r.post('/v1/queues/:queue/batch/send', count('batch_send'), json, async (req, res) => {
    const body = parse(batchSendSchema, req.body, 'batch send request');
    const queue = String(req.params.queue);
    await client.queue(queue); // 404 for the whole batch when the queue does not exist
    const successful: { id: string; messageId: string; replicas: string[] }[] = [];
    const failed: { id: string; status: number; code: string; message: string; retryable: boolean }[] = [];
    await forEachLimit(body.entries, 16, async ({ id, ...entry }) => {
      try {
        successful.push({ id, ...(await client.send(queue, entry)) });
      } catch (err) {
        const e = asCastellanError(err);
        failed.push({ id, status: e.status, code: e.code, message: e.message, retryable: e.retryable });
      }
    });
    res.json({ successful, failed });
  });

  r.post('/v1/queues/:queue/batch/delete', count('batch_delete'), json, async (req, res) => {
    const body = parse(batchDeleteSchema, req.body, 'batch delete request');
    const queue = String(req.params.queue);
    await client.queue(queue);
    const successful: { id: string }[] = [];
    const failed: { id: string; status: number; code: string; message: string; retryable: boolean }[] = [];
    await forEachLimit(body.entries, 16, async ({ id, receiptHandle }) => {
      try {
        await client.delete(queue, receiptHandle);
        successful.push({ id });
      } catch (err) {
        const e = asCastellanError(err);
        failed.push({ id, status: e.status, code: e.code, message: e.message, retryable: e.retryable });
      }
    });
    res.json({ successful, failed });
  });

  r.get('/v1/queues/:queue', count('describe'), async (req, res) => {
    res.json(await client.describe(String(req.params.queue)));
  });

  r.post('/v1/queues/:queue/purge', count('purge'), async (req, res) => {
    const purged = await client.purge(String(req.params.queue));
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
