/**
 * SQS queue attributes (pure): which names exist, which may be set, their
 * ranges, and how they map onto the native queue settings (QueueSpec, SPEC §3)
 * or onto the SQS-only record this layer keeps (registry.ts).
 *
 * Mapped onto the queue itself: VisibilityTimeout, MessageRetentionPeriod,
 * DelaySeconds, MaximumMessageSize, RedrivePolicy (deadLetter) and
 * castellan.ReplicaCount (replicaCount). Kept as SQS-only settings:
 * ReceiveMessageWaitTimeSeconds (applied by this layer to receives) and the
 * access and encryption settings, which are stored and echoed but not
 * enforced (docs/sqs.md says so). FIFO is not supported.
 */
import type { QueueSpec } from '../queues/spec.ts';
import { Sqs } from './errors.ts';
import { queueArn, queueFromArn } from './urls.ts';

export const REPLICA_COUNT_ATTRIBUTE = 'castellan.ReplicaCount';
/** Extension, CreateQueue only: how many queue hosts a new queue gets (default 3). */
export const HOSTS_ATTRIBUTE = 'castellan.Hosts';

const SPEC_BACKED = ['VisibilityTimeout', 'MessageRetentionPeriod', 'DelaySeconds', 'MaximumMessageSize', 'RedrivePolicy', REPLICA_COUNT_ATTRIBUTE] as const;
const STORED = ['ReceiveMessageWaitTimeSeconds', 'Policy', 'RedriveAllowPolicy', 'KmsMasterKeyId', 'KmsDataKeyReusePeriodSeconds', 'SqsManagedSseEnabled'] as const;
const READ_ONLY = [
  'QueueArn',
  'ApproximateNumberOfMessages',
  'ApproximateNumberOfMessagesNotVisible',
  'ApproximateNumberOfMessagesDelayed',
  'CreatedTimestamp',
  'LastModifiedTimestamp',
] as const;
const FIFO_ONLY = ['FifoQueue', 'ContentBasedDeduplication', 'DeduplicationScope', 'FifoThroughputLimit'] as const;

export const SETTABLE: ReadonlySet<string> = new Set<string>([...SPEC_BACKED, ...STORED]);
export const ALL_NAMES: ReadonlySet<string> = new Set<string>([...SPEC_BACKED, ...STORED, ...READ_ONLY, ...FIFO_ONLY, HOSTS_ATTRIBUTE, 'All']);

/** Defaults of the SQS-only settings (as SQS reports them for a new queue). */
export const STORED_DEFAULTS: Record<string, string> = { ReceiveMessageWaitTimeSeconds: '0', SqsManagedSseEnabled: 'true' };

export interface DeadLetterTarget {
  queue: string;
  maxReceiveCount: number;
}

/** What SetQueueAttributes/CreateQueue asked for, checked and split by where it lives. */
export interface AttributeChange {
  spec: Partial<Pick<QueueSpec, 'visibilityTimeoutMs' | 'messageRetentionMs' | 'delayMs' | 'maxMessageBytes' | 'replicaCount'>> & { deadLetter?: DeadLetterTarget | null };
  stored: Record<string, string>;
  hosts?: number;
}

function intIn(name: string, v: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(v.trim())) throw Sqs.invalidAttributeValue(`Invalid value for the parameter ${name}: "${v}" is not an integer.`);
  const n = Number(v);
  if (n < min || n > max) throw Sqs.invalidAttributeValue(`Invalid value for the parameter ${name}: must be from ${min} to ${max}.`);
  return n;
}

/** Parses a RedrivePolicy value ('' removes it). */
export function parseRedrivePolicy(v: string, namespace: string): DeadLetterTarget | null {
  if (v.trim() === '') return null;
  let p: unknown;
  try {
    p = JSON.parse(v);
  } catch {
    throw Sqs.invalidAttributeValue('Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a valid JSON map.');
  }
  const o = (typeof p === 'object' && p !== null ? p : {}) as Record<string, unknown>;
  const arn = o.deadLetterTargetArn;
  const max = o.maxReceiveCount;
  if (typeof arn !== 'string') throw Sqs.invalidAttributeValue('Value for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: deadLetterTargetArn.');
  if (max === undefined) throw Sqs.invalidAttributeValue('Value for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: maxReceiveCount.');
  const count = typeof max === 'number' ? max : Number(max);
  if (!Number.isInteger(count) || count < 1 || count > 1000) {
    throw Sqs.invalidAttributeValue('Value for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: must be from 1 to 1000.');
  }
  const queue = queueFromArn(arn, namespace);
  if (queue === undefined) throw Sqs.invalidAttributeValue(`Value for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn: ${arn} is not a queue ARN of namespace ${namespace}.`);
  return { queue, maxReceiveCount: count };
}

/** Checks attributes to set; FIFO → UnsupportedOperation, unknown or read-only → InvalidAttributeName. */
export function parseAttributeChange(attrs: Record<string, string>, namespace: string, opts: { creating: boolean }): AttributeChange {
  const change: AttributeChange = { spec: {}, stored: {} };
  for (const [name, raw] of Object.entries(attrs)) {
    const v = String(raw);
    switch (name) {
      case 'VisibilityTimeout':
        change.spec.visibilityTimeoutMs = intIn(name, v, 0, 43_200) * 1000;
        break;
      case 'MessageRetentionPeriod':
        change.spec.messageRetentionMs = intIn(name, v, 60, 1_209_600) * 1000;
        break;
      case 'DelaySeconds':
        change.spec.delayMs = intIn(name, v, 0, 900) * 1000;
        break;
      case 'MaximumMessageSize':
        change.spec.maxMessageBytes = intIn(name, v, 1024, 1_048_576);
        break;
      case REPLICA_COUNT_ATTRIBUTE:
        change.spec.replicaCount = intIn(name, v, 1, 5);
        break;
      case 'RedrivePolicy':
        change.spec.deadLetter = parseRedrivePolicy(v, namespace);
        break;
      case 'ReceiveMessageWaitTimeSeconds':
        change.stored[name] = String(intIn(name, v, 0, 20));
        break;
      case 'KmsDataKeyReusePeriodSeconds':
        change.stored[name] = String(intIn(name, v, 60, 86_400));
        break;
      case 'SqsManagedSseEnabled':
        if (v !== 'true' && v !== 'false') throw Sqs.invalidAttributeValue(`Invalid value for the parameter ${name}: expected true or false.`);
        change.stored[name] = v;
        break;
      case 'Policy':
      case 'RedriveAllowPolicy':
      case 'KmsMasterKeyId':
        if (v !== '' && (name === 'Policy' || name === 'RedriveAllowPolicy')) {
          try {
            JSON.parse(v);
          } catch {
            throw Sqs.invalidAttributeValue(`Invalid value for the parameter ${name}: not valid JSON.`);
          }
        }
        change.stored[name] = v;
        break;
      case 'FifoQueue':
        if (v === 'true') throw Sqs.unsupported('FIFO queues are not supported by Castellan; create a standard queue.');
        if (!opts.creating) throw Sqs.invalidAttributeName(`Invalid attribute name: ${name} can only be set when creating a queue.`);
        break;
      case HOSTS_ATTRIBUTE:
        if (!opts.creating) throw Sqs.invalidAttributeName(`Invalid attribute name: ${name} can only be set when creating a queue.`);
        change.hosts = intIn(name, v, 1, 16);
        break;
      default:
        if ((FIFO_ONLY as readonly string[]).includes(name)) throw Sqs.invalidAttributeName(`Unknown Attribute ${name}: it applies to FIFO queues, which Castellan does not support.`);
        throw Sqs.invalidAttributeName(`Unknown Attribute ${name}.`);
    }
  }
  return change;
}

/** The spec after a change (pure); replicaCount beyond the queue's hosts is an InvalidAttributeValue. */
export function applyToSpec(spec: QueueSpec, change: AttributeChange['spec']): QueueSpec {
  const { deadLetter, ...rest } = change;
  const next: QueueSpec = { ...spec, ...rest };
  if (deadLetter === null) delete next.deadLetter;
  else if (deadLetter !== undefined) next.deadLetter = deadLetter;
  if (next.replicaCount > next.hosts) {
    throw Sqs.invalidAttributeValue(`Invalid value for the parameter ${REPLICA_COUNT_ATTRIBUTE}: the queue has ${next.hosts} hosts, so at most ${next.hosts}.`);
  }
  return next;
}

export interface QueueStats {
  visible: number;
  inFlight: number;
  delayed: number;
}

/** Every attribute of a queue as SQS reports it. */
export function renderAttributes(
  spec: QueueSpec,
  stored: Record<string, string>,
  meta: { namespace: string; createdAt: number; modifiedAt: number },
  stats: QueueStats | undefined,
): Record<string, string> {
  const out: Record<string, string> = {
    QueueArn: queueArn(meta.namespace, spec.name),
    CreatedTimestamp: String(meta.createdAt),
    LastModifiedTimestamp: String(meta.modifiedAt),
    VisibilityTimeout: String(Math.round(spec.visibilityTimeoutMs / 1000)),
    MaximumMessageSize: String(spec.maxMessageBytes),
    MessageRetentionPeriod: String(Math.round(spec.messageRetentionMs / 1000)),
    DelaySeconds: String(Math.round(spec.delayMs / 1000)),
    ...STORED_DEFAULTS,
    ...stored,
    [REPLICA_COUNT_ATTRIBUTE]: String(spec.replicaCount),
    [HOSTS_ATTRIBUTE]: String(spec.hosts),
  };
  if (stats !== undefined) {
    out.ApproximateNumberOfMessages = String(stats.visible);
    out.ApproximateNumberOfMessagesNotVisible = String(stats.inFlight);
    out.ApproximateNumberOfMessagesDelayed = String(stats.delayed);
  }
  if (spec.deadLetter !== undefined) {
    out.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: queueArn(meta.namespace, spec.deadLetter.queue), maxReceiveCount: spec.deadLetter.maxReceiveCount });
  }
  for (const [k, v] of Object.entries(out)) if (v === '' && k !== 'Policy') delete out[k];
  return out;
}

/** Names a GetQueueAttributes asks for: checked; `All` (or none) means every one. */
export function wantedAttributes(names: readonly string[] | undefined): { all: boolean; names: Set<string> } {
  const list = names ?? [];
  for (const n of list) if (!ALL_NAMES.has(n)) throw Sqs.invalidAttributeName(`Unknown Attribute ${n}.`);
  return { all: list.includes('All'), names: new Set(list) };
}

/** Whether a CreateQueue's attributes match an existing queue's (only the names it gives are compared). */
export function sameAttributes(requested: Record<string, string>, current: Record<string, string>): string[] {
  const differ: string[] = [];
  for (const [k, v] of Object.entries(requested)) {
    if (k === 'FifoQueue' || k === HOSTS_ATTRIBUTE) continue;
    const cur = current[k] ?? STORED_DEFAULTS[k] ?? '';
    if (k === 'RedrivePolicy' || k === 'Policy' || k === 'RedriveAllowPolicy') {
      if (normalizeJson(v) !== normalizeJson(cur)) differ.push(k);
    } else if (String(v) !== cur) differ.push(k);
  }
  return differ;
}

function normalizeJson(v: string): string {
  try {
    const o = JSON.parse(v) as Record<string, unknown>;
    if (typeof o === 'object' && o !== null && !Array.isArray(o)) {
      return JSON.stringify(Object.fromEntries(Object.entries(o).map(([k, x]) => [k, k === 'maxReceiveCount' ? Number(x) : x]).sort(([a], [b]) => String(a).localeCompare(String(b)))));
    }
    return JSON.stringify(o);
  } catch {
    return v;
  }
}
