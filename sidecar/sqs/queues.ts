/**
 * SQS queue actions: GetQueueUrl, CreateQueue, DeleteQueue, ListQueues,
 * Get/SetQueueAttributes, PurgeQueue, ListDeadLetterSourceQueues,
 * TagQueue/UntagQueue/ListQueueTags. Queue settings live in the native
 * config record (SPEC §3 fields), SQS-only attributes and tags in the SQS
 * registry; queue-attributes.ts decides which is which.
 */
import { sleep } from '../../common/net.ts';
import { defaultSpec, type QueueSpec } from '../queues/spec.ts';
import { Sqs, SqsError, toSqsError } from './errors.ts';
import { int, need, str, stringRecord, strings, type Input } from './input.ts';
import {
  applyToSpec,
  parseAttributeChange,
  renderAttributes,
  sameAttributes,
  wantedAttributes,
  type QueueStats,
} from './queue-attributes.ts';
import type { RequestContext, SqsService } from './service.ts';
import { nativeName, queueUrl, sqsName } from './urls.ts';

type Output = Record<string, unknown>;

/** SQS queue names, standard queues only; returns the native name. */
function checkNewName(name: string): string {
  if (name.endsWith('.fifo')) throw Sqs.unsupported('FIFO queues are not supported by Castellan; create a standard queue.');
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) throw Sqs.invalidParameterValue('Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.');
  return nativeName(name);
}

export async function getQueueUrl(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = nativeName(str(input, 'QueueName', true));
  await svc.queue(name);
  return { QueueUrl: queueUrl(rc.host, svc.namespace, name) };
}

async function stats(svc: SqsService, name: string): Promise<QueueStats> {
  try {
    const d = await svc.client.describe(name);
    return { visible: d.approximateMessages as number, inFlight: d.approximateInFlight as number, delayed: d.approximateDelayed as number };
  } catch (err) {
    throw toSqsError(err);
  }
}

async function currentAttributes(svc: SqsService, name: string, withStats: boolean): Promise<Record<string, string>> {
  const ctx = await svc.queue(name);
  const rec = await svc.record(name, ctx);
  return renderAttributes(ctx.spec, rec.stored, { namespace: svc.namespace, createdAt: rec.createdAt, modifiedAt: rec.modifiedAt }, withStats ? await stats(svc, name) : undefined);
}

async function checkDeadLetterTarget(svc: SqsService, spec: QueueSpec): Promise<void> {
  const dl = spec.deadLetter;
  if (dl === undefined) return;
  try {
    await svc.client.queue(dl.queue);
  } catch (err) {
    const e = toSqsError(err);
    if (e.type === 'QueueDoesNotExist') throw Sqs.invalidAttributeValue('Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist.');
    throw e;
  }
  if (dl.queue === spec.name) throw Sqs.invalidAttributeValue('Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target must be another queue.');
}

function checkTags(tags: Record<string, string>): void {
  if (Object.keys(tags).length > 50) throw Sqs.invalidParameterValue('Too many tags: a queue has at most 50.');
  for (const [k, v] of Object.entries(tags)) {
    if (k.length < 1 || k.length > 128) throw Sqs.invalidParameterValue(`Tag key "${k}" must be 1 to 128 characters.`);
    if (v.length > 256) throw Sqs.invalidParameterValue(`Tag value of "${k}" must be at most 256 characters.`);
  }
}

export async function createQueue(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const requested = str(input, 'QueueName', true);
  const attrs = stringRecord(input, 'Attributes') ?? {};
  const tags = stringRecord(input, 'tags') ?? stringRecord(input, 'Tags') ?? {};
  const name = checkNewName(requested);
  const change = parseAttributeChange(attrs, svc.namespace, { creating: true });
  checkTags(tags);
  const url = queueUrl(rc.host, svc.namespace, name);
  const existing = await exists(svc, name);
  if (existing) {
    const differ = sameAttributes(attrs, await currentAttributes(svc, name, false));
    if (differ.length > 0) throw Sqs.queueNameExists(differ.join(', '));
    return { QueueUrl: url };
  }
  const hosts = change.hosts ?? Math.max(3, change.spec.replicaCount ?? 0);
  const spec = applyToSpec({ ...defaultSpec(name), hosts }, change.spec);
  await checkDeadLetterTarget(svc, spec);
  await svc.lifecycle.create(spec);
  const now = Math.floor(Date.now() / 1000);
  svc.forget(name);
  await svc.updateRecord(name, () => ({ createdAt: now, modifiedAt: now, stored: change.stored, tags, spec: change.spec }), now);
  // The queue answers once its config record exists (castellan dev writes it before answering; the operator soon after).
  const deadline = Date.now() + 60_000;
  while (!(await exists(svc, name))) {
    if (Date.now() > deadline) break;
    await sleep(250);
  }
  return { QueueUrl: url };
}

async function exists(svc: SqsService, name: string): Promise<boolean> {
  try {
    await svc.client.queue(name);
    return true;
  } catch (err) {
    const e = toSqsError(err);
    if (e.type === 'QueueDoesNotExist') return false;
    throw e;
  }
}

export async function deleteQueue(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  await svc.lifecycle.delete(name);
  svc.forget(name);
  // This sidecar keeps a queue's settings for a few seconds; answer once it no longer sees the queue.
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && (await exists(svc, name))) await sleep(250);
  try {
    await svc.registry.remove(name);
  } catch (err) {
    svc.log.warn('removing the SQS record of a deleted queue failed', { queue: name, error: String(err) });
  }
  return {};
}

/** Pagination over sorted names: NextToken is the last name returned, base64url. */
function page(names: string[], input: Input): { names: string[]; next?: string } {
  const max = int(input, 'MaxResults', 1, 1000);
  const token = str(input, 'NextToken');
  let start = 0;
  if (token !== undefined) {
    const after = Buffer.from(token, 'base64url').toString('utf8');
    start = names.findIndex((n) => n > after);
    if (start < 0) start = names.length;
  }
  const limit = max ?? 1000;
  const slice = names.slice(start, start + limit);
  const more = max !== undefined && start + limit < names.length;
  return { names: slice, ...(more ? { next: Buffer.from(slice[slice.length - 1] as string, 'utf8').toString('base64url') } : {}) };
}

export async function listQueues(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const prefix = str(input, 'QueueNamePrefix') ?? '';
  const all = (await listAll(svc)).map(sqsName).filter((n) => n.startsWith(prefix)).sort();
  const p = page(all, input);
  return { QueueUrls: p.names.map((n) => queueUrl(rc.host, svc.namespace, nativeName(n))), ...(p.next === undefined ? {} : { NextToken: p.next }) };
}

async function listAll(svc: SqsService): Promise<string[]> {
  try {
    return await svc.listQueues();
  } catch (err) {
    throw Sqs.unavailable(`Listing queues failed: ${String(err)}`, err);
  }
}

export async function getQueueAttributes(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  const wanted = wantedAttributes(strings(input, 'AttributeNames'));
  await svc.queue(name);
  if (!wanted.all && wanted.names.size === 0) return {};
  const needStats = wanted.all || [...wanted.names].some((n) => n.startsWith('ApproximateNumberOf'));
  const attrs = await currentAttributes(svc, name, needStats);
  const out = wanted.all ? attrs : Object.fromEntries(Object.entries(attrs).filter(([k]) => wanted.names.has(k)));
  return Object.keys(out).length === 0 ? {} : { Attributes: out };
}

export async function setQueueAttributes(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  const attrs = stringRecord(input, 'Attributes');
  if (attrs === undefined) throw Sqs.missingParameter('Attributes');
  const ctx = await svc.queue(name);
  const change = parseAttributeChange(attrs, svc.namespace, { creating: false });
  const next = applyToSpec(ctx.spec, change.spec);
  await checkDeadLetterTarget(svc, next);
  if (JSON.stringify(next) !== JSON.stringify(ctx.spec)) {
    await svc.lifecycle.update(next);
    await svc.writeSpec(ctx, next);
  }
  await svc.updateRecord(name, (r) => ({ ...r, modifiedAt: Math.floor(Date.now() / 1000), stored: { ...r.stored, ...change.stored }, spec: { ...r.spec, ...change.spec } }));
  return {};
}

export async function purgeQueue(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  try {
    await svc.client.purge(name);
  } catch (err) {
    throw toSqsError(err);
  }
  return {};
}

export async function listDeadLetterSourceQueues(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  await svc.queue(name);
  const sources: string[] = [];
  for (const q of await listAll(svc)) {
    try {
      const ctx = await svc.client.queue(q);
      if (ctx.spec.deadLetter?.queue === name) sources.push(q);
    } catch (err) {
      if (!(toSqsError(err) instanceof SqsError && toSqsError(err).type === 'QueueDoesNotExist')) throw toSqsError(err);
    }
  }
  const p = page(sources.map(sqsName).sort(), input);
  return { queueUrls: p.names.map((n) => queueUrl(rc.host, svc.namespace, nativeName(n))), ...(p.next === undefined ? {} : { NextToken: p.next }) };
}

export async function tagQueue(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  need(input, 'Tags');
  const tags = stringRecord(input, 'Tags') ?? {};
  await svc.queue(name);
  await svc.updateRecord(name, (r) => {
    const next = { ...r.tags, ...tags };
    checkTags(next);
    return { ...r, tags: next };
  });
  return {};
}

export async function untagQueue(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  need(input, 'TagKeys');
  const keys = strings(input, 'TagKeys') ?? [];
  await svc.queue(name);
  await svc.updateRecord(name, (r) => ({ ...r, tags: Object.fromEntries(Object.entries(r.tags).filter(([k]) => !keys.includes(k))) }));
  return {};
}

export async function listQueueTags(svc: SqsService, input: Input, rc: RequestContext): Promise<Output> {
  const name = svc.queueName(input, rc);
  const ctx = await svc.queue(name);
  svc.forget(name);
  const rec = await svc.record(name, ctx);
  return Object.keys(rec.tags).length === 0 ? {} : { Tags: rec.tags };
}
