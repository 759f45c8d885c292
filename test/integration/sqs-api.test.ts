/**
 * The SQS-compatible API (SPEC §2.5) driven by the real @aws-sdk/client-sqs v3
 * (JSON protocol) and by raw query-protocol form posts, against `castellan dev`:
 * every supported action, attribute types and custom types, MD5 checksums,
 * system attributes, batches, visibility, queue attributes (mapped onto the
 * queue's settings), tags, ListQueues pagination, the dead-letter path,
 * CreateQueue/DeleteQueue starting and stopping queue hosts, the Castellan
 * replica-count attributes, and the SQS error codes in both protocols.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  AddPermissionCommand,
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListDeadLetterSourceQueuesCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
  SQSServiceException,
  TagQueueCommand,
  UntagQueueCommand,
  type Message,
  type MessageAttributeValue,
} from '@aws-sdk/client-sqs';
import { AwsQueryProtocol } from '@aws-sdk/core/protocols';
import { freePort, waitFor } from '../../common/net.ts';
import { md5Hex, md5OfAttributes } from '../../sidecar/sqs/md5.ts';
import { alive, http, postJson, startDev, type DevRun } from './dev-harness.ts';

const XMLNS = 'http://queue.amazonaws.com/doc/2012-11-05/';
/** Castellan's own queue attributes are not in the SDK's attribute-name type. */
const castellanAttrs = (a: Record<string, string>): Record<string, string> => a;

describe('SQS-compatible API against castellan dev', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-sqs-api-'));
  let dev: DevRun;
  let base: string;
  let sqs: SQSClient;
  const url = (q: string) => `${base}/sqs/default/${q}`;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'dev.yaml'),
      [
        'nats: {embedded: {servers: 1}}',
        'queues:',
        '  jobs: {hosts: 2, replicaCount: 2}',
        '  dead: {hosts: 1, replicaCount: 1}',
        '  src: {hosts: 1, replicaCount: 1, deadLetter: {queue: dead, maxReceiveCount: 2}}',
        `client: {port: ${port}}`,
        '',
      ].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], join(dir, 'state'));
    await dev.ready();
    sqs = new SQSClient({ endpoint: base, region: 'us-east-1', credentials: { accessKeyId: 'castellan', secretAccessKey: 'unchecked' } });
  }, 180_000);

  afterAll(async () => {
    sqs?.destroy();
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  /** The SQS error a call fails with. */
  async function sqsError(p: Promise<unknown>): Promise<SQSServiceException & { Code?: string }> {
    try {
      await p;
    } catch (err) {
      if (err instanceof SQSServiceException) return err;
      throw err;
    }
    throw new Error('expected the call to fail');
  }

  async function drain(q: string): Promise<Message[]> {
    const all: Message[] = [];
    for (;;) {
      const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url(q), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }));
      const got = r.Messages ?? [];
      if (got.length === 0) return all;
      all.push(...got);
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url(q), Entries: got.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })) }));
    }
  }

  it('GetQueueUrl and ListQueues (prefix, pagination)', async () => {
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: 'jobs' }))).QueueUrl).toBe(url('jobs'));
    const all = await sqs.send(new ListQueuesCommand({}));
    expect(all.QueueUrls).toEqual(expect.arrayContaining([url('jobs'), url('dead'), url('src')]));
    expect((await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'de' }))).QueueUrls).toEqual([url('dead')]);
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await sqs.send(new ListQueuesCommand({ MaxResults: 1, ...(token === undefined ? {} : { NextToken: token }) }));
      expect(page.QueueUrls?.length).toBeLessThanOrEqual(1);
      seen.push(...(page.QueueUrls ?? []));
      token = page.NextToken;
    } while (token !== undefined);
    expect(seen.sort()).toEqual([...(all.QueueUrls ?? [])].sort());
  }, 60_000);

  it('sends and receives every attribute type with SQS checksums and system attributes', async () => {
    const attrs: Record<string, MessageAttributeValue> = {
      s: { DataType: 'String', StringValue: 'héllo' },
      n: { DataType: 'Number', StringValue: '-12.5e3' },
      b: { DataType: 'Binary', BinaryValue: new Uint8Array([0, 1, 2, 254, 255]) },
      'custom.s': { DataType: 'String.json', StringValue: '{"a":1}' },
      'custom.n': { DataType: 'Number.int', StringValue: '7' },
      'custom.b': { DataType: 'Binary.gif', BinaryValue: new Uint8Array([71, 73, 70]) },
    };
    const body = 'body with ünïcode ✓ and <xml> & "quotes"';
    const before = Date.now();
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: body, MessageAttributes: attrs }));
    expect(sent.MD5OfMessageBody).toBe(md5Hex(body));
    const asBuffers = Object.fromEntries(
      Object.entries(attrs).map(([k, v]) => [k, { DataType: v.DataType as string, ...(v.StringValue === undefined ? {} : { StringValue: v.StringValue }), ...(v.BinaryValue === undefined ? {} : { BinaryValue: Buffer.from(v.BinaryValue) }) }]),
    );
    expect(sent.MD5OfMessageAttributes).toBe(md5OfAttributes(asBuffers));
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), WaitTimeSeconds: 5, MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'] }));
    expect(r.Messages).toHaveLength(1);
    const m = r.Messages?.[0] as Message;
    expect(m.MessageId).toBe(sent.MessageId);
    expect(m.Body).toBe(body);
    expect(m.MD5OfBody).toBe(md5Hex(body));
    expect(m.MD5OfMessageAttributes).toBe(sent.MD5OfMessageAttributes);
    expect(m.MessageAttributes?.s).toEqual({ DataType: 'String', StringValue: 'héllo' });
    expect(m.MessageAttributes?.n).toEqual({ DataType: 'Number', StringValue: '-12.5e3' });
    expect(Buffer.from(m.MessageAttributes?.b?.BinaryValue ?? [])).toEqual(Buffer.from([0, 1, 2, 254, 255]));
    expect(m.MessageAttributes?.['custom.b']?.DataType).toBe('Binary.gif');
    expect(m.MessageAttributes?.['custom.s']).toEqual({ DataType: 'String.json', StringValue: '{"a":1}' });
    expect(m.Attributes?.ApproximateReceiveCount).toBe('1');
    const sentAt = Number(m.Attributes?.SentTimestamp);
    expect(sentAt).toBeGreaterThanOrEqual(before - 1000);
    expect(Number(m.Attributes?.ApproximateFirstReceiveTimestamp)).toBeGreaterThanOrEqual(sentAt);
    expect(m.Attributes?.SenderId).toBeDefined();
    // Only the attributes asked for, and their checksum.
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url('jobs'), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 }));
    const again = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), WaitTimeSeconds: 5, MessageAttributeNames: ['custom.*'], MessageSystemAttributeNames: ['ApproximateReceiveCount', 'ApproximateFirstReceiveTimestamp'] }));
    const m2 = again.Messages?.[0] as Message;
    expect(Object.keys(m2.MessageAttributes ?? {}).sort()).toEqual(['custom.b', 'custom.n', 'custom.s']);
    expect(m2.MD5OfMessageAttributes).toBe(md5OfAttributes(Object.fromEntries(Object.entries(asBuffers).filter(([k]) => k.startsWith('custom.')))));
    expect(m2.Attributes).toEqual({ ApproximateReceiveCount: '2', ApproximateFirstReceiveTimestamp: m.Attributes?.ApproximateFirstReceiveTimestamp });
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: m2.ReceiptHandle }));
    expect(await drain('jobs')).toHaveLength(0);
  }, 60_000);

  it('batches: send, change visibility and delete ten at a time, with per-entry failures', async () => {
    const entries = Array.from({ length: 10 }, (_, i) => ({ Id: `e${i}`, MessageBody: `batch-${i}`, MessageAttributes: { i: { DataType: 'Number', StringValue: String(i) } } }));
    const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: url('jobs'), Entries: entries }));
    expect(sent.Successful).toHaveLength(10);
    expect(sent.Failed ?? []).toHaveLength(0);
    for (const s of sent.Successful ?? []) expect(s.MD5OfMessageBody).toBe(md5Hex(`batch-${s.Id?.slice(1)}`));
    const got: Message[] = [];
    await waitFor(
      'ten batch messages',
      async () => {
        const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60 }));
        got.push(...(r.Messages ?? []));
        return got.length >= 10 || undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(got.map((m) => m.Body).sort()).toEqual(entries.map((e) => e.MessageBody).sort());
    const vis = await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: url('jobs'),
        Entries: [...got.slice(0, 2).map((m, i) => ({ Id: `v${i}`, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 120 })), { Id: 'bad', ReceiptHandle: 'garbage', VisibilityTimeout: 1 }],
      }),
    );
    expect(vis.Successful?.map((s) => s.Id).sort()).toEqual(['v0', 'v1']);
    expect(vis.Failed).toEqual([expect.objectContaining({ Id: 'bad', Code: 'ReceiptHandleIsInvalid', SenderFault: true })]);
    const del = await sqs.send(
      new DeleteMessageBatchCommand({ QueueUrl: url('jobs'), Entries: [...got.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })), { Id: 'bad', ReceiptHandle: 'nope' }].slice(-10) }),
    );
    expect(del.Successful).toHaveLength(9);
    expect(del.Failed).toEqual([expect.objectContaining({ Id: 'bad', Code: 'ReceiptHandleIsInvalid', SenderFault: true })]);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: got[0]?.ReceiptHandle }));
    const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url('jobs'), AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    expect(attrs.Attributes).toEqual({ ApproximateNumberOfMessages: '0', ApproximateNumberOfMessagesNotVisible: '0' });
  }, 90_000);

  it('answers the SQS error codes SDKs parse', async () => {
    const missing = await sqsError(sqs.send(new GetQueueUrlCommand({ QueueName: 'no-such-queue' })));
    expect(missing.name).toBe('QueueDoesNotExist');
    expect(missing.$metadata.httpStatusCode).toBe(400);
    expect((await sqsError(sqs.send(new SendMessageCommand({ QueueUrl: url('no-such-queue'), MessageBody: 'x' })))).name).toBe('QueueDoesNotExist');
    expect((await sqsError(sqs.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: 'not-a-handle' })))).name).toBe('ReceiptHandleIsInvalid');
    const many = Array.from({ length: 11 }, (_, i) => ({ Id: `e${i}`, MessageBody: 'x' }));
    expect((await sqsError(sqs.send(new SendMessageBatchCommand({ QueueUrl: url('jobs'), Entries: many })))).name).toBe('TooManyEntriesInBatchRequest');
    expect((await sqsError(sqs.send(new SendMessageBatchCommand({ QueueUrl: url('jobs'), Entries: [] })))).name).toBe('EmptyBatchRequest');
    expect((await sqsError(sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url('jobs'), Entries: [{ Id: 'a', ReceiptHandle: 'x' }, { Id: 'a', ReceiptHandle: 'y' }] })))).name).toBe(
      'BatchEntryIdsNotDistinct',
    );
    expect((await sqsError(sqs.send(new GetQueueAttributesCommand({ QueueUrl: url('jobs'), AttributeNames: ['Bogus' as 'All'] })))).name).toBe('InvalidAttributeName');
    expect((await sqsError(sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), MaxNumberOfMessages: 11 })))).name).toBe('InvalidParameterValue');
    expect((await sqsError(sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'bad \u0001 char' })))).name).toBe('InvalidMessageContents');
    expect(
      (await sqsError(sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'x', MessageAttributes: { n: { DataType: 'Number', StringValue: 'abc' } } })))).name,
    ).toBe('InvalidParameterValue');
    expect((await sqsError(sqs.send(new AddPermissionCommand({ QueueUrl: url('jobs'), Label: 'l', AWSAccountIds: ['1'], Actions: ['SendMessage'] })))).name).toBe('UnsupportedOperation');
    expect((await sqsError(sqs.send(new CreateQueueCommand({ QueueName: 'q.fifo', Attributes: { FifoQueue: 'true' } })))).name).toBe('UnsupportedOperation');
    expect((await sqsError(sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { VisibilityTimeout: '99999' } })))).name).toBe('InvalidAttributeValue');

    // The JSON protocol's wire format exactly: __type and the query-compatible code header.
    const raw = async (target: string, body: unknown) =>
      fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': target }, body: JSON.stringify(body) });
    const r1 = await raw('AmazonSQS.GetQueueUrl', { QueueName: 'no-such-queue' });
    expect(r1.status).toBe(400);
    expect(r1.headers.get('x-amzn-query-error')).toBe('AWS.SimpleQueueService.NonExistentQueue;Sender');
    expect(await r1.json()).toEqual({ __type: 'com.amazonaws.sqs#QueueDoesNotExist', message: expect.any(String) });
    const r2 = await raw('AmazonSQS.SendMessage', { MessageBody: 'x' });
    expect(((await r2.json()) as { __type: string }).__type).toBe('com.amazonaws.sqs#MissingParameter');
    const r3 = await raw('AmazonSQS.Frobnicate', {});
    expect(r3.headers.get('x-amzn-query-error')).toBe('InvalidAction;Sender');
  }, 60_000);

  it('queue attributes map onto the queue and survive reads; ReceiveMessageWaitTimeSeconds applies', async () => {
    const all = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url('jobs'), AttributeNames: ['All'] }))).Attributes ?? {};
    expect(all).toMatchObject({ QueueArn: 'arn:aws:sqs:castellan:default:jobs', VisibilityTimeout: '30', DelaySeconds: '0', MaximumMessageSize: '262144', MessageRetentionPeriod: '345600', 'castellan.ReplicaCount': '2' });
    expect(Number(all.CreatedTimestamp)).toBeGreaterThan(1_600_000_000);
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { VisibilityTimeout: '45', DelaySeconds: '1', ReceiveMessageWaitTimeSeconds: '2', MaximumMessageSize: '4096' } }));
    const after = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url('jobs'), AttributeNames: ['VisibilityTimeout', 'DelaySeconds', 'ReceiveMessageWaitTimeSeconds', 'MaximumMessageSize', 'LastModifiedTimestamp'] }))).Attributes;
    expect(after).toMatchObject({ VisibilityTimeout: '45', DelaySeconds: '1', ReceiveMessageWaitTimeSeconds: '2', MaximumMessageSize: '4096' });
    // The native API sees the same settings.
    const native = await http(`${base}/v1/queues/jobs`);
    expect(native.body).toMatchObject({ visibilityTimeoutSeconds: 45, delaySeconds: 1, maxMessageBytes: 4096 });
    expect((await sqsError(sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'x'.repeat(5000) })))).name).toBe('InvalidParameterValue');
    // Delay 1 s and the queue's wait time: a receive without WaitTimeSeconds long-polls and gets it.
    await sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'delayed' }));
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs') }));
    expect(r.Messages?.[0]?.Body).toBe('delayed');
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: r.Messages?.[0]?.ReceiptHandle }));
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { VisibilityTimeout: '30', DelaySeconds: '0', ReceiveMessageWaitTimeSeconds: '0', MaximumMessageSize: '262144' } }));
  }, 60_000);

  it('castellan.replicas per message and castellan.ReplicaCount per queue choose the replica count', async () => {
    const one = await sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'r1', MessageAttributes: { 'castellan.replicas': { DataType: 'Number', StringValue: '1' } } }));
    const two = await sqs.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'r2' }));
    const got = new Map<string, string[]>();
    await waitFor(
      'both messages on the native API',
      async () => {
        const r = await postJson(`${base}/v1/queues/jobs/receive`, { maxMessages: 10, waitSeconds: 1, visibilityTimeoutSeconds: 0 });
        for (const m of (r.body as { messages: { messageId: string; replicas: string[] }[] }).messages) got.set(m.messageId, m.replicas);
        return got.size >= 2 || undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(got.get(one.MessageId as string)).toHaveLength(1);
    expect(got.get(two.MessageId as string)).toHaveLength(2);
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: castellanAttrs({ 'castellan.ReplicaCount': '1' }) }));
    expect((await http(`${base}/v1/queues/jobs`)).body).toMatchObject({ replicaCount: 1 });
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: castellanAttrs({ 'castellan.ReplicaCount': '2' }) }));
    expect((await sqsError(sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: castellanAttrs({ 'castellan.ReplicaCount': '3' }) })))).name).toBe('InvalidAttributeValue');
    await sqs.send(new PurgeQueueCommand({ QueueUrl: url('jobs') }));
    await waitFor('the purge', async () => ((await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), WaitTimeSeconds: 1 }))).Messages === undefined ? true : undefined), { timeoutMs: 30_000 });
  }, 60_000);

  it('moves a message received maxReceiveCount times to the dead-letter queue, attributes intact', async () => {
    const sources = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: url('dead') }));
    expect(sources.queueUrls).toEqual([url('src')]);
    const redrive = JSON.parse((await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url('src'), AttributeNames: ['RedrivePolicy'] }))).Attributes?.RedrivePolicy ?? '{}') as Record<string, unknown>;
    expect(redrive).toEqual({ deadLetterTargetArn: 'arn:aws:sqs:castellan:default:dead', maxReceiveCount: 2 });
    const attrs = { kind: { DataType: 'String.kind', StringValue: 'poison' } };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: url('src'), MessageBody: 'poison', MessageAttributes: attrs }));
    for (let i = 1; i <= 2; i++) {
      const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('src'), WaitTimeSeconds: 5, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }));
      expect(r.Messages?.[0]?.Attributes?.ApproximateReceiveCount).toBe(String(i));
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url('src'), ReceiptHandle: r.Messages?.[0]?.ReceiptHandle, VisibilityTimeout: 0 }));
    }
    const dead: Message[] = [];
    await waitFor(
      'the message in the dead-letter queue',
      async () => {
        await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('src'), WaitTimeSeconds: 0 })).then((r) => expect(r.Messages).toBeUndefined());
        const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url('dead'), WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }));
        dead.push(...(r.Messages ?? []));
        return dead.length > 0 || undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(dead[0]?.Body).toBe('poison');
    expect(dead[0]?.MD5OfMessageAttributes).toBe(sent.MD5OfMessageAttributes);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url('dead'), ReceiptHandle: dead[0]?.ReceiptHandle }));
    // RedrivePolicy set through SQS maps onto the queue's dead-letter settings.
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: 'arn:aws:sqs:castellan:default:dead', maxReceiveCount: 5 }) } }));
    expect((await http(`${base}/v1/queues/jobs`)).body).toMatchObject({ deadLetter: { queue: 'dead', maxReceiveCount: 5 } });
    expect((await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: url('dead') }))).queueUrls?.sort()).toEqual([url('jobs'), url('src')]);
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { RedrivePolicy: '' } }));
    expect((await http(`${base}/v1/queues/jobs`)).body).not.toHaveProperty('deadLetter');
    const noTarget = JSON.stringify({ deadLetterTargetArn: 'arn:aws:sqs:castellan:default:nowhere', maxReceiveCount: 5 });
    expect((await sqsError(sqs.send(new SetQueueAttributesCommand({ QueueUrl: url('jobs'), Attributes: { RedrivePolicy: noTarget } })))).name).toBe('InvalidAttributeValue');
  }, 90_000);

  it('tags a queue', async () => {
    await sqs.send(new TagQueueCommand({ QueueUrl: url('jobs'), Tags: { team: 'core', env: 'dev' } }));
    expect((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url('jobs') }))).Tags).toEqual({ team: 'core', env: 'dev' });
    await sqs.send(new UntagQueueCommand({ QueueUrl: url('jobs'), TagKeys: ['env'] }));
    expect((await sqs.send(new ListQueueTagsCommand({ QueueUrl: url('jobs') }))).Tags).toEqual({ team: 'core' });
  }, 30_000);

  it('CreateQueue starts the queue’s hosts in castellan dev; DeleteQueue stops them', async () => {
    const created = await sqs.send(
      new CreateQueueCommand({ QueueName: 'made', Attributes: castellanAttrs({ 'castellan.Hosts': '1', 'castellan.ReplicaCount': '1', VisibilityTimeout: '5' }), tags: { owner: 'test' } }),
    );
    expect(created.QueueUrl).toBe(url('made'));
    const host = dev.state().processes.find((p) => p.name === 'made-0');
    expect(host).toMatchObject({ role: 'queue-host', queue: 'made' });
    const pid = host?.pid as number;
    expect(alive(pid)).toBe(true);
    await sqs.send(new SendMessageCommand({ QueueUrl: created.QueueUrl, MessageBody: 'in a new queue' }));
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: created.QueueUrl, WaitTimeSeconds: 5 }));
    expect(r.Messages?.[0]?.Body).toBe('in a new queue');
    expect((await sqs.send(new GetQueueAttributesCommand({ QueueUrl: created.QueueUrl, AttributeNames: ['VisibilityTimeout'] }))).Attributes).toEqual({ VisibilityTimeout: '5' });
    expect((await sqs.send(new ListQueueTagsCommand({ QueueUrl: created.QueueUrl }))).Tags).toEqual({ owner: 'test' });
    // Same attributes: the same URL; different ones: QueueNameExists.
    expect((await sqs.send(new CreateQueueCommand({ QueueName: 'made', Attributes: { VisibilityTimeout: '5' } }))).QueueUrl).toBe(url('made'));
    const exists = await sqsError(sqs.send(new CreateQueueCommand({ QueueName: 'made', Attributes: { VisibilityTimeout: '6' } })));
    expect(exists.name).toBe('QueueNameExists');
    await sqs.send(new DeleteQueueCommand({ QueueUrl: created.QueueUrl }));
    expect((await sqsError(sqs.send(new GetQueueUrlCommand({ QueueName: 'made' })))).name).toBe('QueueDoesNotExist');
    await waitFor('the queue host to stop', async () => (!alive(pid) && dev.state().processes.every((p) => p.name !== 'made-0') ? true : undefined), { timeoutMs: 30_000 });
    expect((await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'made' }))).QueueUrls ?? []).toEqual([]);
  }, 180_000);

  it('takes any SQS queue name, mixed case and underscores included', async () => {
    const created = await sqs.send(new CreateQueueCommand({ QueueName: 'Made_Queue', Attributes: castellanAttrs({ 'castellan.Hosts': '1', 'castellan.ReplicaCount': '1' }) }));
    expect(created.QueueUrl).toBe(url('Made_Queue'));
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: 'Made_Queue' }))).QueueUrl).toBe(url('Made_Queue'));
    expect((await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'Made_' }))).QueueUrls).toEqual([url('Made_Queue')]);
    expect((await sqs.send(new GetQueueAttributesCommand({ QueueUrl: created.QueueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn).toBe('arn:aws:sqs:castellan:default:Made_Queue');
    await sqs.send(new SendMessageCommand({ QueueUrl: created.QueueUrl, MessageBody: 'mixed' }));
    expect((await sqs.send(new ReceiveMessageCommand({ QueueUrl: created.QueueUrl, WaitTimeSeconds: 5 }))).Messages?.[0]?.Body).toBe('mixed');
    expect((await sqsError(sqs.send(new CreateQueueCommand({ QueueName: 'bad name!' })))).name).toBe('InvalidParameterValue');
    await sqs.send(new DeleteQueueCommand({ QueueUrl: created.QueueUrl }));
    expect((await sqsError(sqs.send(new GetQueueUrlCommand({ QueueName: 'Made_Queue' })))).name).toBe('QueueDoesNotExist');
  }, 180_000);

  it('the SDK forced onto the query protocol (form posts, XML parsed by the SDK) works too', async () => {
    const q = new SQSClient({
      endpoint: base,
      region: 'us-east-1',
      credentials: { accessKeyId: 'castellan', secretAccessKey: 'unchecked' },
      protocol: AwsQueryProtocol,
      protocolSettings: { defaultNamespace: 'com.amazonaws.sqs', xmlNamespace: XMLNS, version: '2012-11-05' },
    });
    try {
      const attrs: Record<string, MessageAttributeValue> = {
        s: { DataType: 'String', StringValue: 'über' },
        n: { DataType: 'Number.float', StringValue: '3.25' },
        b: { DataType: 'Binary', BinaryValue: new Uint8Array([5, 6, 7]) },
      };
      const sent = await q.send(new SendMessageCommand({ QueueUrl: url('jobs'), MessageBody: 'query <&> body', MessageAttributes: attrs }));
      expect(sent.MD5OfMessageBody).toBe(md5Hex('query <&> body'));
      const r = await q.send(new ReceiveMessageCommand({ QueueUrl: url('jobs'), WaitTimeSeconds: 5, MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'] }));
      const m = r.Messages?.[0] as Message;
      expect(m.Body).toBe('query <&> body');
      expect(m.MD5OfMessageAttributes).toBe(sent.MD5OfMessageAttributes);
      expect(m.MessageAttributes?.n).toEqual({ DataType: 'Number.float', StringValue: '3.25' });
      expect(Buffer.from(m.MessageAttributes?.b?.BinaryValue ?? [])).toEqual(Buffer.from([5, 6, 7]));
      expect(m.Attributes?.ApproximateReceiveCount).toBe('1');
      await q.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: m.ReceiptHandle }));
      const batch = await q.send(new SendMessageBatchCommand({ QueueUrl: url('jobs'), Entries: [{ Id: 'a', MessageBody: 'qa' }, { Id: 'b', MessageBody: 'qb' }] }));
      expect(batch.Successful?.map((x) => x.Id).sort()).toEqual(['a', 'b']);
      expect((await q.send(new ListQueuesCommand({ QueueNamePrefix: 'jo' }))).QueueUrls).toEqual([url('jobs')]);
      expect((await q.send(new GetQueueAttributesCommand({ QueueUrl: url('jobs'), AttributeNames: ['QueueArn'] }))).Attributes).toEqual({ QueueArn: 'arn:aws:sqs:castellan:default:jobs' });
      await q.send(new TagQueueCommand({ QueueUrl: url('jobs'), Tags: { via: 'query' } }));
      expect((await q.send(new ListQueueTagsCommand({ QueueUrl: url('jobs') }))).Tags).toMatchObject({ via: 'query' });
      expect((await q.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: url('dead') }))).queueUrls).toEqual([url('src')]);
      const missing = await sqsError(q.send(new GetQueueUrlCommand({ QueueName: 'no-such-queue' })));
      expect(missing.name).toBe('QueueDoesNotExist');
      expect((await sqsError(q.send(new DeleteMessageCommand({ QueueUrl: url('jobs'), ReceiptHandle: 'junk' })))).name).toBe('ReceiptHandleIsInvalid');
      await q.send(new PurgeQueueCommand({ QueueUrl: url('jobs') }));
    } finally {
      q.destroy();
    }
  }, 60_000);

  describe('query protocol (form posts, XML answers)', () => {
    const form = async (path: string, params: Record<string, string>) => {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ Version: '2012-11-05', ...params }).toString() });
      return { status: res.status, type: res.headers.get('content-type') ?? '', xml: await res.text() };
    };
    const tag = (xml: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];

    it('sends, receives and deletes with attributes and checksums', async () => {
      const s = await form('/', {
        Action: 'SendMessage',
        QueueUrl: url('jobs'),
        MessageBody: 'from a form & <xml>',
        'MessageAttribute.1.Name': 'n',
        'MessageAttribute.1.Value.DataType': 'Number',
        'MessageAttribute.1.Value.StringValue': '5',
        'MessageAttribute.2.Name': 'b',
        'MessageAttribute.2.Value.DataType': 'Binary',
        'MessageAttribute.2.Value.BinaryValue': Buffer.from([9, 8, 7]).toString('base64'),
      });
      expect(s.status).toBe(200);
      expect(s.type).toMatch(/xml/);
      expect(s.xml).toContain(`<SendMessageResponse xmlns="${XMLNS}"><SendMessageResult>`);
      expect(tag(s.xml, 'MD5OfMessageBody')).toBe(md5Hex('from a form & <xml>'));
      const md5Attrs = md5OfAttributes({ n: { DataType: 'Number', StringValue: '5' }, b: { DataType: 'Binary', BinaryValue: Buffer.from([9, 8, 7]) } });
      expect(tag(s.xml, 'MD5OfMessageAttributes')).toBe(md5Attrs);
      expect(tag(s.xml, 'RequestId')).toMatch(/^[0-9a-f-]{36}$/);
      // Posted to the queue URL itself, no QueueUrl parameter.
      const r = await form('/sqs/default/jobs', { Action: 'ReceiveMessage', WaitTimeSeconds: '5', 'MessageAttributeName.1': 'All', 'AttributeName.1': 'All' });
      expect(r.xml).toContain('<ReceiveMessageResult><Message>');
      expect(tag(r.xml, 'Body')).toBe('from a form &amp; &lt;xml&gt;');
      expect(tag(r.xml, 'MD5OfBody')).toBe(md5Hex('from a form & <xml>'));
      expect(tag(r.xml, 'MD5OfMessageAttributes')).toBe(md5Attrs);
      expect(r.xml).toContain('<MessageAttribute><Name>b</Name><Value><BinaryValue>CQgH</BinaryValue><DataType>Binary</DataType></Value></MessageAttribute>');
      expect(r.xml).toContain('<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>');
      const handle = tag(r.xml, 'ReceiptHandle') as string;
      const d = await form('/', { Action: 'DeleteMessage', QueueUrl: url('jobs'), ReceiptHandle: handle });
      expect(d.xml).toContain(`<DeleteMessageResponse xmlns="${XMLNS}"><ResponseMetadata><RequestId>`);
    }, 60_000);

    it('queue actions and batches', async () => {
      const u = await form('/', { Action: 'GetQueueUrl', QueueName: 'jobs' });
      expect(u.xml).toContain(`<GetQueueUrlResult><QueueUrl>${url('jobs')}</QueueUrl></GetQueueUrlResult>`);
      const l = await form('/', { Action: 'ListQueues', QueueNamePrefix: 'src' });
      expect(l.xml).toContain(`<ListQueuesResult><QueueUrl>${url('src')}</QueueUrl></ListQueuesResult>`);
      const a = await form('/', { Action: 'GetQueueAttributes', QueueUrl: url('jobs'), 'AttributeName.1': 'QueueArn', 'AttributeName.2': 'VisibilityTimeout' });
      expect(a.xml).toContain('<Attribute><Name>QueueArn</Name><Value>arn:aws:sqs:castellan:default:jobs</Value></Attribute>');
      const b = await form('/', {
        Action: 'SendMessageBatch',
        QueueUrl: url('jobs'),
        'SendMessageBatchRequestEntry.1.Id': 'one',
        'SendMessageBatchRequestEntry.1.MessageBody': 'b1',
        'SendMessageBatchRequestEntry.2.Id': 'two',
        'SendMessageBatchRequestEntry.2.MessageBody': 'b2',
      });
      expect(b.xml.match(/<SendMessageBatchResultEntry>/g)).toHaveLength(2);
      expect(b.xml).toContain('<Id>one</Id>');
      const t = await form('/', { Action: 'TagQueue', QueueUrl: url('src'), 'Tag.1.Key': 'k', 'Tag.1.Value': 'v' });
      expect(t.status).toBe(200);
      expect((await form('/', { Action: 'ListQueueTags', QueueUrl: url('src') })).xml).toContain('<Tag><Key>k</Key><Value>v</Value></Tag>');
      expect((await form('/', { Action: 'PurgeQueue', QueueUrl: url('jobs') })).status).toBe(200);
    }, 60_000);

    it('errors as ErrorResponse XML', async () => {
      const e = await form('/', { Action: 'GetQueueUrl', QueueName: 'no-such-queue' });
      expect(e.status).toBe(400);
      expect(e.xml).toContain(`<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>`);
      expect(tag(e.xml, 'RequestId')).toBeDefined();
      expect(tag((await form('/', { Action: 'Frobnicate' })).xml, 'Code')).toBe('InvalidAction');
      expect(tag((await form('/', { Action: 'SendMessage', QueueUrl: url('jobs') })).xml, 'Code')).toBe('MissingParameter');
      expect(tag((await form('/', { Action: 'DeleteMessageBatch', QueueUrl: url('jobs') })).xml, 'Code')).toBe('AWS.SimpleQueueService.EmptyBatchRequest');
      expect(tag((await form('/', { Action: 'CreateQueue', QueueName: 'x.fifo' })).xml, 'Code')).toBe('AWS.SimpleQueueService.UnsupportedOperation');
      expect(tag((await form('/', { Action: 'CreateQueue', QueueName: 'jobs', 'Attribute.1.Name': 'DelaySeconds', 'Attribute.1.Value': '9' })).xml, 'Code')).toBe('QueueAlreadyExists');
    }, 30_000);
  });
});
