/**
 * The SQS layer's pure parts: MD5 of bodies and attributes against vectors
 * published by other SQS implementations (checked against AWS), attribute
 * validation and the native round trip, query-protocol flattening, XML and
 * JSON rendering of answers and errors, queue attributes ↔ queue settings,
 * queue URLs and ARNs, and the mapping of native errors to SQS codes.
 */
import { describe, expect, it } from '@jest/globals';
import { CastellanError, Errors } from '../../common/errors.ts';
import { defaultSpec } from '../../sidecar/queues/spec.ts';
import { SqsError, toSqsError } from '../../sidecar/sqs/errors.ts';
import { batchEntries, int } from '../../sidecar/sqs/input.ts';
import { md5Hex, md5OfAttributes } from '../../sidecar/sqs/md5.ts';
import { decodeAttributes, encodeAttributes, selectAttributes, TYPES_KEY, validateMessageAttributes, validText } from '../../sidecar/sqs/message-attributes.ts';
import { queryToInput } from '../../sidecar/sqs/query-input.ts';
import { applyToSpec, parseAttributeChange, renderAttributes, sameAttributes, wantedAttributes } from '../../sidecar/sqs/queue-attributes.ts';
import { renderJsonError, renderXml, renderXmlError, XMLNS } from '../../sidecar/sqs/render.ts';
import { nativeName, queueArn, queueFromArn, queueFromUrl, queueUrl, sqsName } from '../../sidecar/sqs/urls.ts';
import { isValidQueueName } from '../../sidecar/queues/names.ts';

function sqsError(fn: () => unknown): SqsError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SqsError) return err;
    throw err;
  }
  throw new Error('expected an SqsError');
}

describe('MD5 as SQS computes it', () => {
  it('body: MD5 hex of the UTF-8 bytes', () => {
    expect(md5Hex('hello')).toBe('5d41402abc4b2a76b9719d911017c592');
    expect(md5Hex('héllo ✓')).toBe(md5Hex(Buffer.from('héllo ✓', 'utf8')));
  });

  it('attributes: published vectors', () => {
    expect(md5OfAttributes({ SellerName: { DataType: 'String', StringValue: 'Example Store' } })).toBe('cd28f3b68aeee4b2eac9c66f2f694b58');
    expect(md5OfAttributes({ timestamp: { DataType: 'Number', StringValue: '1493147359900' } })).toBe('235c5c510d26fb653d073faed50ae77c');
    // Order of the input does not matter: names are sorted.
    expect(md5OfAttributes({ ordinal: { DataType: 'Number', StringValue: '1' }, category: { DataType: 'String', StringValue: 'test' } })).toBe('d21ae90c49061e927f57df5f5d72be1f');
    expect(md5OfAttributes({ category: { DataType: 'String', StringValue: 'test' }, ordinal: { DataType: 'Number', StringValue: '1' } })).toBe('d21ae90c49061e927f57df5f5d72be1f');
  });

  it('attributes: binary uses transport byte 2 and the raw bytes; none → absent', () => {
    const bin = Buffer.from([0, 1, 2, 255]);
    const expected = md5Hex(
      Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from('b'), Buffer.from([0, 0, 0, 6]), Buffer.from('Binary'), Buffer.from([2]), Buffer.from([0, 0, 0, 4]), bin]),
    );
    expect(md5OfAttributes({ b: { DataType: 'Binary', BinaryValue: bin } })).toBe(expected);
    expect(md5OfAttributes({})).toBeUndefined();
    expect(md5OfAttributes(undefined)).toBeUndefined();
  });
});

describe('message attributes', () => {
  const attrs = {
    s: { DataType: 'String', StringValue: 'plain' },
    n: { DataType: 'Number.int', StringValue: '42' },
    b: { DataType: 'Binary.png', BinaryValue: Buffer.from([1, 2, 3]) },
    c: { DataType: 'String.json', StringValue: '{"a":1}' },
  };

  it('round-trip through the native map; plain String stays itself', () => {
    const native = encodeAttributes(attrs) as Record<string, string>;
    expect(native.s).toBe('plain');
    expect(native.b).toBe(Buffer.from([1, 2, 3]).toString('base64'));
    expect(JSON.parse(native[TYPES_KEY] as string)).toEqual({ n: 'Number.int', b: 'Binary.png', c: 'String.json' });
    const back = decodeAttributes(native);
    expect(back).toEqual(attrs);
    expect(md5OfAttributes(back)).toBe(md5OfAttributes(attrs));
    expect(decodeAttributes({ kind: 'native' })).toEqual({ kind: { DataType: 'String', StringValue: 'native' } });
  });

  it('selection by name, prefix pattern and All', () => {
    expect(Object.keys(selectAttributes(attrs, ['All']))).toHaveLength(4);
    expect(Object.keys(selectAttributes(attrs, ['.*']))).toHaveLength(4);
    expect(Object.keys(selectAttributes(attrs, ['s', 'n']))).toEqual(['s', 'n']);
    expect(Object.keys(selectAttributes({ 'a.x': attrs.s, 'a.y': attrs.s, b: attrs.s }, ['a.*']))).toEqual(['a.x', 'a.y']);
    expect(selectAttributes(attrs, undefined)).toEqual({});
  });

  it('rejects what SQS rejects', () => {
    const bad = (a: Record<string, { DataType: string; StringValue?: string; BinaryValue?: Buffer }>) => sqsError(() => validateMessageAttributes(a)).type;
    expect(bad({ 'AWS.x': { DataType: 'String', StringValue: 'v' } })).toBe('InvalidParameterValue');
    expect(bad({ 'a..b': { DataType: 'String', StringValue: 'v' } })).toBe('InvalidParameterValue');
    expect(bad({ a: { DataType: 'Date', StringValue: 'v' } })).toBe('InvalidParameterValue');
    expect(bad({ a: { DataType: 'Number', StringValue: 'twelve' } })).toBe('InvalidParameterValue');
    expect(bad({ a: { DataType: 'String', StringValue: '' } })).toBe('InvalidParameterValue');
    expect(bad({ a: { DataType: 'Binary' } })).toBe('InvalidParameterValue');
    expect(bad({ 'castellan.sqs.types': { DataType: 'String', StringValue: 'x' } })).toBe('InvalidParameterValue');
    const eleven = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`a${i}`, { DataType: 'String', StringValue: 'v' }]));
    expect(bad(eleven)).toBe('InvalidParameterValue');
    expect(() => validateMessageAttributes({ 'x.y-z_1': { DataType: 'Number', StringValue: '-1.5e3' } })).not.toThrow();
    expect(validText('ok\ttab\n')).toBe(true);
    expect(validText('bad\u0001')).toBe(false);
    expect(validText('\uFFFF')).toBe(false);
  });
});

describe('input checks', () => {
  it('integers from JSON numbers or query strings, in range', () => {
    expect(int({ a: 5 }, 'a', 1, 10)).toBe(5);
    expect(int({ a: '7' }, 'a', 1, 10)).toBe(7);
    expect(sqsError(() => int({ a: 11 }, 'a', 1, 10)).type).toBe('InvalidParameterValue');
    expect(sqsError(() => int({}, 'a', 1, 10, true)).type).toBe('MissingParameter');
  });

  it('batches: empty, too many, bad and repeated ids', () => {
    expect(sqsError(() => batchEntries({}, 'X')).type).toBe('EmptyBatchRequest');
    expect(sqsError(() => batchEntries({ Entries: [] }, 'X')).code).toBe('AWS.SimpleQueueService.EmptyBatchRequest');
    expect(sqsError(() => batchEntries({ Entries: Array.from({ length: 11 }, (_, i) => ({ Id: `i${i}` })) }, 'X')).type).toBe('TooManyEntriesInBatchRequest');
    expect(sqsError(() => batchEntries({ Entries: [{ Id: 'a' }, { Id: 'a' }] }, 'X')).type).toBe('BatchEntryIdsNotDistinct');
    expect(sqsError(() => batchEntries({ Entries: [{ Id: 'a b' }] }, 'X')).type).toBe('InvalidBatchEntryId');
    expect(batchEntries({ Entries: [{ Id: 'a' }, { Id: 'b-1_2' }] }, 'X')).toHaveLength(2);
  });
});

describe('query protocol input', () => {
  it('flattens attributes, lists and batch entries into the JSON shape', () => {
    const p = new Map(
      Object.entries({
        QueueUrl: 'http://h/sqs/default/q',
        MessageBody: 'hi',
        'MessageAttribute.1.Name': 'n',
        'MessageAttribute.1.Value.DataType': 'Number',
        'MessageAttribute.1.Value.StringValue': '3',
        'MessageAttribute.2.Name': 'b',
        'MessageAttribute.2.Value.DataType': 'Binary',
        'MessageAttribute.2.Value.BinaryValue': 'AQI=',
      }),
    );
    expect(queryToInput('SendMessage', p)).toEqual({
      QueueUrl: 'http://h/sqs/default/q',
      MessageBody: 'hi',
      MessageAttributes: { n: { DataType: 'Number', StringValue: '3' }, b: { DataType: 'Binary', BinaryValue: 'AQI=' } },
    });
    const r = new Map(Object.entries({ 'AttributeName.1': 'All', 'MessageAttributeName.1': 'n', 'AttributeName.2': 'SentTimestamp', MaxNumberOfMessages: '10' }));
    expect(queryToInput('ReceiveMessage', r)).toEqual({ AttributeNames: ['All', 'SentTimestamp'], MessageAttributeNames: ['n'], MaxNumberOfMessages: '10' });
    const b = new Map(
      Object.entries({
        'SendMessageBatchRequestEntry.1.Id': 'a',
        'SendMessageBatchRequestEntry.1.MessageBody': 'x',
        'SendMessageBatchRequestEntry.2.Id': 'b',
        'SendMessageBatchRequestEntry.2.MessageBody': 'y',
        'SendMessageBatchRequestEntry.2.MessageAttribute.1.Name': 'k',
        'SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.DataType': 'String',
        'SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.StringValue': 'v',
      }),
    );
    expect(queryToInput('SendMessageBatch', b)).toEqual({
      Entries: [
        { Id: 'a', MessageBody: 'x' },
        { Id: 'b', MessageBody: 'y', MessageAttributes: { k: { DataType: 'String', StringValue: 'v' } } },
      ],
    });
    const c = new Map(Object.entries({ QueueName: 'q', 'Attribute.1.Name': 'DelaySeconds', 'Attribute.1.Value': '5', 'Tag.1.Key': 'team', 'Tag.1.Value': 'a' }));
    expect(queryToInput('CreateQueue', c)).toEqual({ QueueName: 'q', Attributes: { DelaySeconds: '5' }, tags: { team: 'a' } });
    expect(queryToInput('UntagQueue', new Map([['TagKey.1', 'team']]))).toEqual({ TagKeys: ['team'] });
  });
});

describe('rendering', () => {
  it('query XML: result, flattened messages, attribute maps, escaping', () => {
    const r = renderXml(
      'ReceiveMessage',
      {
        Messages: [
          {
            MessageId: 'm1',
            Body: '<a & "b">',
            Attributes: { SentTimestamp: '1' },
            MessageAttributes: { k: { StringValue: 'v', DataType: 'String' }, b: { BinaryValue: 'AQI=', DataType: 'Binary' } },
          },
        ],
      },
      'rid',
    );
    expect(r.status).toBe(200);
    expect(r.body).toContain(`<ReceiveMessageResponse xmlns="${XMLNS}"><ReceiveMessageResult><Message><MessageId>m1</MessageId>`);
    expect(r.body).toContain('<Body>&lt;a &amp; &quot;b&quot;&gt;</Body>');
    expect(r.body).toContain('<Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute>');
    expect(r.body).toContain('<MessageAttribute><Name>k</Name><Value><StringValue>v</StringValue><DataType>String</DataType></Value></MessageAttribute>');
    expect(r.body).toContain('<ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></ReceiveMessageResponse>');
    const b = renderXml('DeleteMessageBatch', { Successful: [{ Id: 'a' }], Failed: [{ Id: 'b', SenderFault: true, Code: 'ReceiptHandleIsInvalid', Message: 'x' }] }, 'r');
    expect(b.body).toContain('<DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>');
    expect(b.body).toContain('<BatchResultErrorEntry><Id>b</Id><SenderFault>true</SenderFault><Code>ReceiptHandleIsInvalid</Code><Message>x</Message></BatchResultErrorEntry>');
    expect(renderXml('ListQueues', { QueueUrls: ['u1', 'u2'] }, 'r').body).toContain('<ListQueuesResult><QueueUrl>u1</QueueUrl><QueueUrl>u2</QueueUrl></ListQueuesResult>');
    expect(renderXml('DeleteQueue', {}, 'r').body).toContain(`<DeleteQueueResponse xmlns="${XMLNS}"><ResponseMetadata>`);
  });

  it('errors in both protocols', () => {
    const e = toSqsError(Errors.notFound('x', 'QUEUE_NOT_FOUND'));
    const j = renderJsonError(e, 'r');
    expect(j.status).toBe(400);
    expect(j.headers['x-amzn-query-error']).toBe('AWS.SimpleQueueService.NonExistentQueue;Sender');
    expect(JSON.parse(j.body)).toEqual({ __type: 'com.amazonaws.sqs#QueueDoesNotExist', message: 'The specified queue does not exist.' });
    const x = renderXmlError(e, 'r');
    expect(x.body).toContain('<ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error><Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>');
  });

  it('native errors map onto SQS codes', () => {
    expect(toSqsError(Errors.badRequest('x', 'INVALID_RECEIPT_HANDLE')).type).toBe('ReceiptHandleIsInvalid');
    expect(toSqsError(Errors.conflict('x', 'MESSAGE_NOT_IN_FLIGHT')).code).toBe('AWS.SimpleQueueService.MessageNotInflight');
    expect(toSqsError(Errors.unavailable('x', 'NOT_ENOUGH_HOSTS'))).toMatchObject({ type: 'ServiceUnavailable', status: 503, fault: 'Receiver' });
    expect(toSqsError(new CastellanError(413, 'PAYLOAD_TOO_LARGE', 'x')).type).toBe('InvalidParameterValue');
    expect(toSqsError(new Error('boom'))).toMatchObject({ status: 500, code: 'InternalFailure' });
  });
});

describe('queue attributes', () => {
  const ns = 'default';

  it('maps settable attributes onto the queue settings', () => {
    const dlq = queueArn(ns, 'dlq');
    const c = parseAttributeChange(
      { VisibilityTimeout: '10', MessageRetentionPeriod: '120', DelaySeconds: '2', MaximumMessageSize: '2048', RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq, maxReceiveCount: '3' }), ReceiveMessageWaitTimeSeconds: '5', 'castellan.ReplicaCount': '3' },
      ns,
      { creating: false },
    );
    const spec = applyToSpec(defaultSpec('q'), c.spec);
    expect(spec).toMatchObject({ visibilityTimeoutMs: 10_000, messageRetentionMs: 120_000, delayMs: 2_000, maxMessageBytes: 2048, replicaCount: 3, deadLetter: { queue: 'dlq', maxReceiveCount: 3 } });
    expect(c.stored).toEqual({ ReceiveMessageWaitTimeSeconds: '5' });
    const attrs = renderAttributes(spec, c.stored, { namespace: ns, createdAt: 1, modifiedAt: 2 }, { visible: 4, inFlight: 5, delayed: 6 });
    expect(attrs).toMatchObject({
      QueueArn: 'arn:aws:sqs:castellan:default:q',
      VisibilityTimeout: '10',
      MessageRetentionPeriod: '120',
      DelaySeconds: '2',
      MaximumMessageSize: '2048',
      ReceiveMessageWaitTimeSeconds: '5',
      ApproximateNumberOfMessages: '4',
      ApproximateNumberOfMessagesNotVisible: '5',
      ApproximateNumberOfMessagesDelayed: '6',
      CreatedTimestamp: '1',
      LastModifiedTimestamp: '2',
      'castellan.ReplicaCount': '3',
    });
    expect(JSON.parse(attrs.RedrivePolicy as string)).toEqual({ deadLetterTargetArn: dlq, maxReceiveCount: 3 });
    expect(applyToSpec(spec, parseAttributeChange({ RedrivePolicy: '' }, ns, { creating: false }).spec).deadLetter).toBeUndefined();
  });

  it('rejects bad names and values, FIFO and read-only attributes', () => {
    const err = (a: Record<string, string>, creating = false) => sqsError(() => parseAttributeChange(a, ns, { creating })).type;
    expect(err({ VisibilityTimeout: '43201' })).toBe('InvalidAttributeValue');
    expect(err({ DelaySeconds: 'x' })).toBe('InvalidAttributeValue');
    expect(err({ Bogus: '1' })).toBe('InvalidAttributeName');
    expect(err({ QueueArn: 'x' })).toBe('InvalidAttributeName');
    expect(err({ ContentBasedDeduplication: 'true' })).toBe('InvalidAttributeName');
    expect(err({ FifoQueue: 'true' }, true)).toBe('UnsupportedOperation');
    expect(err({ RedrivePolicy: '{"maxReceiveCount":2}' })).toBe('InvalidAttributeValue');
    expect(err({ RedrivePolicy: '{"deadLetterTargetArn":"arn:aws:sqs:castellan:other:q","maxReceiveCount":2}' })).toBe('InvalidAttributeValue');
    expect(sqsError(() => applyToSpec(defaultSpec('q'), { replicaCount: 4 })).type).toBe('InvalidAttributeValue');
    expect(sqsError(() => wantedAttributes(['Nope'])).type).toBe('InvalidAttributeName');
    expect(wantedAttributes(['All']).all).toBe(true);
  });

  it('CreateQueue compares only the attributes it names', () => {
    const cur = { VisibilityTimeout: '30', RedrivePolicy: '{"maxReceiveCount":3,"deadLetterTargetArn":"a"}' };
    expect(sameAttributes({ VisibilityTimeout: '30' }, cur)).toEqual([]);
    expect(sameAttributes({ RedrivePolicy: '{"deadLetterTargetArn":"a","maxReceiveCount":"3"}' }, cur)).toEqual([]);
    expect(sameAttributes({ VisibilityTimeout: '31' }, cur)).toEqual(['VisibilityTimeout']);
    expect(sameAttributes({ ReceiveMessageWaitTimeSeconds: '0' }, cur)).toEqual([]);
  });
});

describe('queue URLs and ARNs', () => {
  it('builds and parses them for this namespace only', () => {
    expect(queueUrl('127.0.0.1:3600', 'default', 'jobs')).toBe('http://127.0.0.1:3600/sqs/default/jobs');
    expect(queueFromUrl('http://other:1/sqs/default/jobs', 'default')).toBe('jobs');
    expect(queueFromUrl('/sqs/default/jobs', 'default')).toBe('jobs');
    expect(sqsError(() => queueFromUrl('http://h/sqs/other/jobs', 'default')).type).toBe('QueueDoesNotExist');
    expect(sqsError(() => queueFromUrl('http://h/123456789012/jobs', 'default')).type).toBe('InvalidAddress');
    expect(queueFromArn('arn:aws:sqs:castellan:default:jobs', 'default')).toBe('jobs');
    expect(queueFromArn('arn:aws:sqs:castellan:x:jobs', 'default')).toBeUndefined();
  });

  it('maps any SQS name one-to-one onto a native (Kubernetes) name', () => {
    expect(nativeName('jobs')).toBe('jobs');
    for (const name of ['Orders_Queue', 'x-jobs', 'A', '_', '-lead', 'trail-', 'A'.repeat(80), 'MiXeD-09_z']) {
      const native = nativeName(name);
      expect(isValidQueueName(native)).toBe(true);
      expect(native).not.toBe(name);
      expect(sqsName(native)).toBe(name);
    }
    expect(nativeName('Orders_Queue')).not.toBe(nativeName('orders_queue'));
    const native = nativeName('Orders_Queue');
    expect(queueUrl('h:1', 'default', native)).toBe('http://h:1/sqs/default/Orders_Queue');
    expect(queueFromUrl('http://h:1/sqs/default/Orders_Queue', 'default')).toBe(native);
    expect(queueArn('default', native)).toBe('arn:aws:sqs:castellan:default:Orders_Queue');
    expect(queueFromArn('arn:aws:sqs:castellan:default:Orders_Queue', 'default')).toBe(native);
  });
});
