/**
 * The SQS-compatible API on the sidecar's port (SPEC §2.5): routes, protocol
 * detection and the action table. A request is the JSON protocol when it
 * carries `X-Amz-Target: AmazonSQS.<Action>` (content type
 * application/x-amz-json-1.0), otherwise the query protocol when it has an
 * `Action` parameter (form body or query string). Both are accepted on `/`
 * and on queue URLs `/sqs/<namespace>/<queue>`. Signatures are not checked.
 * Every failure is an SQS error in the request's protocol (render.ts).
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import express, { Router as ExpressRouter, type NextFunction, type Request, type Response } from 'express';
import { describeError, type Logger } from '../../common/logger.ts';
import type { QueueClient } from '../queues/client.ts';
import { Sqs, SqsError, toSqsError } from './errors.ts';
import type { Input } from './input.ts';
import { createLifecycle, type Lifecycle } from './lifecycle.ts';
import * as messages from './messages.ts';
import { queryToInput } from './query-input.ts';
import * as queues from './queues.ts';
import { SqsRegistry } from './registry.ts';
import { renderJson, renderJsonError, renderXml, renderXmlError, type Rendered } from './render.ts';
import { SqsService, type RequestContext } from './service.ts';

type Handler = (svc: SqsService, input: Input, rc: RequestContext) => Promise<Record<string, unknown>>;

export const ACTIONS: Record<string, Handler> = {
  SendMessage: messages.sendMessage,
  SendMessageBatch: messages.sendMessageBatch,
  ReceiveMessage: messages.receiveMessage,
  DeleteMessage: messages.deleteMessage,
  DeleteMessageBatch: messages.deleteMessageBatch,
  ChangeMessageVisibility: messages.changeMessageVisibility,
  ChangeMessageVisibilityBatch: messages.changeMessageVisibilityBatch,
  GetQueueUrl: queues.getQueueUrl,
  CreateQueue: queues.createQueue,
  DeleteQueue: queues.deleteQueue,
  ListQueues: queues.listQueues,
  GetQueueAttributes: queues.getQueueAttributes,
  SetQueueAttributes: queues.setQueueAttributes,
  PurgeQueue: queues.purgeQueue,
  ListDeadLetterSourceQueues: queues.listDeadLetterSourceQueues,
  TagQueue: queues.tagQueue,
  UntagQueue: queues.untagQueue,
  ListQueueTags: queues.listQueueTags,
};

/** SQS actions Castellan knows but does not offer: UnsupportedOperation, never a silent success. */
export const UNSUPPORTED = new Set(['AddPermission', 'RemovePermission', 'StartMessageMoveTask', 'CancelMessageMoveTask', 'ListMessageMoveTasks']);

export interface SqsOptions {
  client: QueueClient;
  nc: NatsConnection;
  prefix: string;
  namespace: string;
  log: Logger;
  lifecycle?: Lifecycle;
}

interface Parsed {
  protocol: 'json' | 'query';
  action: string;
  input: Input;
}

function parse(req: Request): Parsed | undefined {
  const raw = Buffer.isBuffer(req.body) ? (req.body as Buffer) : Buffer.alloc(0);
  const target = req.get('x-amz-target');
  const type = req.get('content-type') ?? '';
  if (target !== undefined || /^application\/x-amz-json/i.test(type)) {
    const m = /^AmazonSQS\.(\w+)$/.exec(target ?? '');
    if (m === null) throw Sqs.invalidAction(target ?? '(no X-Amz-Target)');
    let input: unknown = {};
    if (raw.length > 0) {
      try {
        input = JSON.parse(raw.toString('utf8'));
      } catch {
        throw new SqsError('SerializationException', 'The request body is not valid JSON.');
      }
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new SqsError('SerializationException', 'The request body must be a JSON object.');
    return { protocol: 'json', action: m[1] as string, input: input as Input };
  }
  const params = new Map<string, string>();
  const q = req.originalUrl.indexOf('?');
  if (q >= 0) for (const [k, v] of new URLSearchParams(req.originalUrl.slice(q + 1))) params.set(k, v);
  // Form-encoded, whatever content type the client declared (some send none).
  if (raw.length > 0) for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) params.set(k, v);
  const action = params.get('Action');
  if (action === undefined) return undefined;
  return { protocol: 'query', action, input: queryToInput(action, params) };
}

function send(res: Response, r: Rendered): void {
  res.status(r.status);
  for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
  res.send(r.body);
}

export function sqsRoutes(opts: SqsOptions): ExpressRouter {
  const registry = new SqsRegistry(opts.nc, opts.prefix, opts.namespace, opts.log.child({ component: 'sqs.registry' }));
  const svc = new SqsService({
    client: opts.client,
    nc: opts.nc,
    registry,
    lifecycle: opts.lifecycle ?? createLifecycle(opts.nc, opts.prefix, opts.namespace),
    prefix: opts.prefix,
    namespace: opts.namespace,
    log: opts.log,
  });
  const r = ExpressRouter();
  const body = express.raw({ type: () => true, limit: '16mb' });

  const handle = async (req: Request, res: Response, next: NextFunction) => {
    const requestId = randomUUID();
    let parsed: Parsed | undefined;
    const jsonish = req.get('x-amz-target') !== undefined || /^application\/x-amz-json/i.test(req.get('content-type') ?? '');
    try {
      parsed = parse(req);
    } catch (err) {
      const e = toSqsError(err);
      send(res, jsonish ? renderJsonError(e, requestId) : renderXmlError(e, requestId));
      return;
    }
    if (parsed === undefined) {
      // Not an SQS request: `/` and queue URLs answer like SQS without an Action.
      if (req.method === 'GET' && req.path === '/') {
        next();
        return;
      }
      send(res, renderXmlError(new SqsError('MissingAction', 'No Action parameter was given.'), requestId));
      return;
    }
    const { protocol, action, input } = parsed;
    try {
      const rc: RequestContext = {
        host: req.get('host') ?? '127.0.0.1',
        requestId,
        ...(req.path.startsWith('/sqs/') ? { pathQueue: svc.queueName({ QueueUrl: req.path }, { host: '', requestId }) } : {}),
      };
      const fn = ACTIONS[action];
      if (fn === undefined) {
        if (UNSUPPORTED.has(action)) throw Sqs.unsupported(`${action} is not supported by Castellan.`);
        throw Sqs.invalidAction(action);
      }
      const out = await fn(svc, input, rc);
      send(res, protocol === 'json' ? renderJson(out, requestId) : renderXml(action, out, requestId));
    } catch (err) {
      const e = toSqsError(err);
      if (e.status >= 500) opts.log.warn('SQS action failed', { action, status: e.status, code: e.code, error: describeError(err) });
      send(res, protocol === 'json' ? renderJsonError(e, requestId) : renderXmlError(e, requestId));
    }
  };

  const safe = (req: Request, res: Response, next: NextFunction) => {
    handle(req, res, next).catch(next);
  };
  r.post('/', body, safe);
  r.get('/', safe);
  r.post('/sqs/:namespace/:queue', body, safe);
  r.get('/sqs/:namespace/:queue', safe);
  return r;
}
