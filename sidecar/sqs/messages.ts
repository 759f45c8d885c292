/**
 * SQS message actions on the native queue API (SPEC §2.3 → §2.5):
 * SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch),
 * ChangeMessageVisibility(Batch). Checks input as SQS does, carries typed
 * attributes through the native attribute map (message-attributes.ts) and
 * answers with SQS's checksums (md5.ts).
 */
import { Sqs, SqsError, toSqsError } from './errors.ts';
import { batchEntries, int, messageAttrs, need, str, strings, type Input } from './input.ts';
import { md5Hex, md5OfAttributes, type MessageAttr } from './md5.ts';
import {
  attributesSize,
  decodeAttributes,
  encodeAttributes,
  REPLICAS_ATTRIBUTE,
  selectAttributes,
  TRACE_KEY,
  validateMessageAttributes,
  validText,
} from './message-attributes.ts';
import type { RequestContext, SqsService } from './service.ts';
import type { QueueCtx } from '../queues/client.ts';

type Output = Record<string, unknown>;

const SYSTEM_NAMES = new Set([
  'All',
  'SenderId',
  'SentTimestamp',
  'ApproximateReceiveCount',
  'ApproximateFirstReceiveTimestamp',
  'SequenceNumber',
  'MessageDeduplicationId',
  'MessageGroupId',
  'AWSTraceHeader',
  'DeadLetterQueueSourceArn',
]);

interface PreparedSend {
  native: { body: string; attributes?: Record<string, string>; delaySeconds?: number; replicas?: number; deduplicationId?: string };
  md5Body: string;
  md5Attrs?: string;
  md5System?: string;
  size: number;
}

/** Checks one message as SQS does and builds the native send. */
function prepareSend(e: Input, ctx: QueueCtx): PreparedSend {
  const body = need(e, 'MessageBody');
  if (typeof body !== 'string') throw Sqs.invalidParameterValue('Value for parameter MessageBody is invalid: expected a string.');
  if (!validText(body)) {
    throw Sqs.invalidMessageContents('Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF');
  }
  const delay = int(e, 'DelaySeconds', 0, 900);
  const attrs = messageAttrs(e, 'MessageAttributes');
  validateMessageAttributes(attrs);
  const system = messageAttrs(e, 'MessageSystemAttributes');
  let trace: string | undefined;
  for (const [name, a] of Object.entries(system ?? {})) {
    if (name !== 'AWSTraceHeader') throw Sqs.invalidParameterValue(`Message system attribute name '${name}' is invalid.`);
    if (a.DataType !== 'String' || a.StringValue === undefined || a.StringValue === '') throw Sqs.invalidParameterValue('Message system attribute AWSTraceHeader must be a non-empty String.');
    trace = a.StringValue;
  }
  let replicas: number | undefined;
  const r = attrs?.[REPLICAS_ATTRIBUTE];
  if (r !== undefined) {
    replicas = Number(r.StringValue);
    if (!r.DataType.startsWith('Number') || !Number.isInteger(replicas) || replicas < 1 || replicas > ctx.spec.hosts) {
      throw Sqs.invalidParameterValue(`Message attribute '${REPLICAS_ATTRIBUTE}' must be a Number from 1 to ${ctx.spec.hosts} (the queue's hosts).`);
    }
  }
  const size = Buffer.byteLength(body, 'utf8') + attributesSize(attrs);
  if (size > ctx.spec.maxMessageBytes) {
    throw Sqs.invalidParameterValue(`One or more parameters are invalid. Reason: Message must be shorter than ${ctx.spec.maxMessageBytes} bytes.`);
  }
  const dedup = str(e, 'MessageDeduplicationId');
  const native = encodeAttributes(attrs) ?? {};
  if (trace !== undefined) native[TRACE_KEY] = trace;
  const md5Attrs = md5OfAttributes(attrs);
  const md5System = md5OfAttributes(system);
  return {
    native: {
      body,
      ...(Object.keys(native).length === 0 ? {} : { attributes: native }),
      ...(delay === undefined ? {} : { delaySeconds: delay }),
      ...(replicas === undefined ? {} : { replicas }),
      ...(dedup === undefined ? {} : { deduplicationId: dedup }),
    },
    md5Body: md5Hex(body),
    ...(md5Attrs === undefined ? {} : { md5Attrs }),
    ...(md5System === undefined ? {} : { md5System }),
    size,
  };
}

async function send(svc: SqsService, ctx: QueueCtx, p: PreparedSend): Promise<Output> {
  let out;
  try {
    out = await svc.client.sendTo(ctx, p.native);
  } catch (err) {
    throw toSqsError(err);
  }
  return {
    MessageId: out.messageId,
    MD5OfMessageBody: p.md5Body,
    ...(p.md5Attrs === undefined ? {} : { MD5OfMessageAttributes: p.md5Attrs }),
    ...(p.md5System === undefined ? {} : { MD5OfMessageSystemAttributes: p.md5System }),
  };
}

export async function sendMessage(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const ctx = await svc.queue(svc.queueName(input, rc));
  return send(svc, ctx, prepareSend(input, ctx));
}

function failure(id: string, err: unknown): Output {
  const e = toSqsError(err);
  return { Id: id, SenderFault: e.fault === 'Sender', Code: e.code, Message: e.message };
}

export async function sendMessageBatch(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const ctx = await svc.queue(svc.queueName(input, rc));
  const entries = batchEntries(input, 'SendMessageBatchRequestEntry');
  const prepared = entries.map((e) => {
    try {
      return prepareSend(e, ctx);
    } catch (err) {
      return err instanceof SqsError ? err : toSqsError(err);
    }
  });
  const total = prepared.reduce((n, p) => n + (p instanceof SqsError ? 0 : p.size), 0);
  if (total > ctx.spec.maxMessageBytes) throw Sqs.batchTooLong(ctx.spec.maxMessageBytes);
  const Successful: Output[] = [];
  const Failed: Output[] = [];
  // At most 10 entries: all at once.
  await Promise.all(
    entries.map(async (e, i) => {
      const id = e.Id as string;
      const p = prepared[i] as PreparedSend | SqsError;
      if (p instanceof SqsError) {
        Failed.push(failure(id, p));
        return;
      }
      try {
        Successful.push({ Id: id, ...(await send(svc, ctx, p)) });
      } catch (err) {
        Failed.push(failure(id, err));
      }
    }),
  );
  return { Successful, Failed };
}

export async function receiveMessage(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  const ctx = await svc.queue(name);
  const max = int(input, 'MaxNumberOfMessages', 1, 10) ?? 1;
  const visibility = int(input, 'VisibilityTimeout', 0, 43_200);
  const record = await svc.record(name, ctx);
  const wait = int(input, 'WaitTimeSeconds', 0, 20) ?? Number(record.stored.ReceiveMessageWaitTimeSeconds ?? '0');
  const system = new Set([...(strings(input, 'AttributeNames') ?? []), ...(strings(input, 'MessageSystemAttributeNames') ?? [])]);
  for (const n of system) if (!SYSTEM_NAMES.has(n)) throw Sqs.invalidAttributeName(`Unknown Attribute ${n}.`);
  const wantedAttrs = strings(input, 'MessageAttributeNames');
  const all = system.has('All');
  const want = (n: string) => all || system.has(n);
  let messages;
  try {
    messages = await svc.client.receive(name, { maxMessages: max, waitSeconds: wait, ...(visibility === undefined ? {} : { visibilityTimeoutSeconds: visibility }) });
  } catch (err) {
    throw toSqsError(err);
  }
  if (messages.length === 0) return {};
  const now = Date.now();
  const out = await Promise.all(
    messages.map(async (m) => {
      const attributes: Record<string, string> = {};
      if (want('SenderId')) attributes.SenderId = 'castellan';
      if (want('SentTimestamp')) attributes.SentTimestamp = String(Date.parse(m.enqueuedAt));
      if (want('ApproximateReceiveCount')) attributes.ApproximateReceiveCount = String(m.receiveCount);
      if (want('ApproximateFirstReceiveTimestamp')) {
        let first = now;
        try {
          first = await svc.registry.firstReceive(name, m.messageId, now);
        } catch (err) {
          svc.log.warn('recording the first receive time failed; reporting this receive', { queue: name, id: m.messageId, error: String(err) });
        }
        attributes.ApproximateFirstReceiveTimestamp = String(first);
      }
      const trace = m.attributes[TRACE_KEY];
      if (trace !== undefined && want('AWSTraceHeader')) attributes.AWSTraceHeader = trace;
      const selected = selectAttributes(decodeAttributes(m.attributes), wantedAttrs);
      const md5Attrs = md5OfAttributes(selected);
      return {
        MessageId: m.messageId,
        ReceiptHandle: m.receiptHandle,
        MD5OfBody: md5Hex(m.body),
        Body: m.body,
        ...(Object.keys(attributes).length === 0 ? {} : { Attributes: attributes }),
        ...(md5Attrs === undefined ? {} : { MD5OfMessageAttributes: md5Attrs, MessageAttributes: renderAttrs(selected) }),
      };
    }),
  );
  return { Messages: out };
}

function renderAttrs(attrs: Record<string, MessageAttr>): Record<string, Output> {
  const out: Record<string, Output> = {};
  for (const [name, a] of Object.entries(attrs)) {
    out[name] = a.BinaryValue !== undefined ? { BinaryValue: a.BinaryValue.toString('base64'), DataType: a.DataType } : { StringValue: a.StringValue ?? '', DataType: a.DataType };
  }
  return out;
}

function handle(e: Input): string {
  const h = need(e, 'ReceiptHandle');
  if (typeof h !== 'string') throw Sqs.receiptHandleIsInvalid('The input receipt handle is invalid.');
  return h;
}

export async function deleteMessage(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  const h = handle(input);
  try {
    await svc.client.delete(name, h);
  } catch (err) {
    throw toSqsError(err);
  }
  return {};
}

export async function changeMessageVisibility(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  const h = handle(input);
  const seconds = int(input, 'VisibilityTimeout', 0, 43_200, true) as number;
  try {
    await svc.client.changeVisibility(name, h, seconds);
  } catch (err) {
    throw toSqsError(err);
  }
  return {};
}

async function batch(entries: Input[], each: (e: Input) => Promise<void>): Promise<Output> {
  const Successful: Output[] = [];
  const Failed: Output[] = [];
  await Promise.all(
    entries.map(async (e) => {
      try {
        await each(e);
        Successful.push({ Id: e.Id });
      } catch (err) {
        Failed.push(failure(e.Id as string, err));
      }
    }),
  );
  return { Successful, Failed };
}

export async function deleteMessageBatch(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  const entries = batchEntries(input, 'DeleteMessageBatchRequestEntry');
  return batch(entries, async (e) => {
    try {
      await svc.client.delete(name, handle(e));
    } catch (err) {
      throw toSqsError(err);
    }
  });
}

export async function changeMessageVisibilityBatch(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  const entries = batchEntries(input, 'ChangeMessageVisibilityBatchRequestEntry');
  return batch(entries, async (e) => {
    const seconds = int(e, 'VisibilityTimeout', 0, 43_200, true) as number;
    try {
      await svc.client.changeVisibility(name, handle(e), seconds);
    } catch (err) {
      throw toSqsError(err);
    }
  });
}
