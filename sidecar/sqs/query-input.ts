/**
 * The query protocol's flattened parameters (`AttributeName.1`,
 * `MessageAttribute.1.Value.DataType`, `SendMessageBatchRequestEntry.2.Id`,
 * ...) turned into the JSON protocol's input shape (pure), so one set of
 * schemas and handlers serves both protocols.
 */

type Params = Map<string, string>;

/** Indices N present under `prefix.N` / `prefix.N.…`, ascending. */
function indices(p: Params, prefix: string): number[] {
  const seen = new Set<number>();
  const re = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)(\\.|$)`);
  for (const k of p.keys()) {
    const m = re.exec(k);
    if (m !== null) seen.add(Number(m[1]));
  }
  return [...seen].sort((a, b) => a - b);
}

function list(p: Params, prefix: string): string[] | undefined {
  const ix = indices(p, prefix);
  if (ix.length === 0) return undefined;
  return ix.map((i) => p.get(`${prefix}.${i}`)).filter((v): v is string => v !== undefined);
}

function nameValueMap(p: Params, prefix: string, keyField: string, valueField: string): Record<string, string> | undefined {
  const ix = indices(p, prefix);
  if (ix.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const i of ix) {
    const k = p.get(`${prefix}.${i}.${keyField}`);
    if (k !== undefined) out[k] = p.get(`${prefix}.${i}.${valueField}`) ?? '';
  }
  return out;
}

function messageAttributes(p: Params, prefix: string): Record<string, Record<string, string>> | undefined {
  const ix = indices(p, prefix);
  if (ix.length === 0) return undefined;
  const out: Record<string, Record<string, string>> = {};
  for (const i of ix) {
    const name = p.get(`${prefix}.${i}.Name`);
    if (name === undefined) continue;
    const v: Record<string, string> = {};
    for (const f of ['DataType', 'StringValue', 'BinaryValue']) {
      const x = p.get(`${prefix}.${i}.Value.${f}`);
      if (x !== undefined) v[f] = x;
    }
    out[name] = v;
  }
  return out;
}

/** Entries `prefix.N.<Field>` with their own nested attributes. */
function entries(p: Params, prefix: string, fields: string[], withAttributes: boolean): Record<string, unknown>[] | undefined {
  const ix = indices(p, prefix);
  if (ix.length === 0) return undefined;
  return ix.map((i) => {
    const e: Record<string, unknown> = {};
    for (const f of fields) {
      const v = p.get(`${prefix}.${i}.${f}`);
      if (v !== undefined) e[f] = v;
    }
    if (withAttributes) {
      const a = messageAttributes(p, `${prefix}.${i}.MessageAttribute`);
      if (a !== undefined) e.MessageAttributes = a;
      const s = messageAttributes(p, `${prefix}.${i}.MessageSystemAttribute`);
      if (s !== undefined) e.MessageSystemAttributes = s;
    }
    return e;
  });
}

const SCALARS = [
  'QueueUrl',
  'QueueName',
  'QueueNamePrefix',
  'QueueOwnerAWSAccountId',
  'MessageBody',
  'DelaySeconds',
  'MaxNumberOfMessages',
  'VisibilityTimeout',
  'WaitTimeSeconds',
  'ReceiveRequestAttemptId',
  'ReceiptHandle',
  'NextToken',
  'MaxResults',
  'MessageDeduplicationId',
  'MessageGroupId',
];

/** Query parameters → JSON-protocol input for `action`. */
export function queryToInput(action: string, p: Params): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const k of SCALARS) {
    const v = p.get(k);
    if (v !== undefined) input[k] = v;
  }
  const set = (k: string, v: unknown) => {
    if (v !== undefined) input[k] = v;
  };
  switch (action) {
    case 'SendMessage':
      set('MessageAttributes', messageAttributes(p, 'MessageAttribute'));
      set('MessageSystemAttributes', messageAttributes(p, 'MessageSystemAttribute'));
      break;
    case 'SendMessageBatch':
      set('Entries', entries(p, 'SendMessageBatchRequestEntry', ['Id', 'MessageBody', 'DelaySeconds', 'MessageDeduplicationId', 'MessageGroupId'], true));
      break;
    case 'DeleteMessageBatch':
      set('Entries', entries(p, 'DeleteMessageBatchRequestEntry', ['Id', 'ReceiptHandle'], false));
      break;
    case 'ChangeMessageVisibilityBatch':
      set('Entries', entries(p, 'ChangeMessageVisibilityBatchRequestEntry', ['Id', 'ReceiptHandle', 'VisibilityTimeout'], false));
      break;
    case 'ReceiveMessage':
      set('AttributeNames', list(p, 'AttributeName'));
      set('MessageAttributeNames', list(p, 'MessageAttributeName'));
      set('MessageSystemAttributeNames', list(p, 'MessageSystemAttributeName'));
      break;
    case 'GetQueueAttributes':
      set('AttributeNames', list(p, 'AttributeName'));
      break;
    case 'CreateQueue':
      set('Attributes', nameValueMap(p, 'Attribute', 'Name', 'Value'));
      set('tags', nameValueMap(p, 'Tag', 'Key', 'Value'));
      break;
    case 'SetQueueAttributes':
      set('Attributes', nameValueMap(p, 'Attribute', 'Name', 'Value'));
      break;
    case 'TagQueue':
      set('Tags', nameValueMap(p, 'Tag', 'Key', 'Value'));
      break;
    case 'UntagQueue':
      set('TagKeys', list(p, 'TagKey'));
      break;
    default:
      break;
  }
  return input;
}
