/**
 * What every SQS action needs (I/O adapter around the native queue API):
 * the queue client (SPEC §2.3 semantics), the SQS registry (registry.ts),
 * the lifecycle adapter (lifecycle.ts), and the resolution of a request's
 * queue (QueueUrl parameter, or the queue URL it was posted to).
 *
 * A queue's SQS record is cached for 5 s per sidecar. When the settings last
 * set through SQS differ from the queue's config record (a queue host that
 * restarted wrote back its start-up settings), they are written again, so a
 * SetQueueAttributes outlives host restarts.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { writeQueueConfig } from '../queues/assets.ts';
import type { QueueClient, QueueCtx } from '../queues/client.ts';
import { queueNames } from '../queues/names.ts';
import type { QueueSpec } from '../queues/spec.ts';
import { Sqs, SqsError, toSqsError } from './errors.ts';
import type { Input } from './input.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { QueueRecord, SqsRegistry } from './registry.ts';
import { queueFromUrl } from './urls.ts';

export interface RequestContext {
  /** Host header (for queue URLs). */
  host: string;
  /** Queue named by the request path (`/sqs/<ns>/<queue>`), if any. */
  pathQueue?: string;
  requestId: string;
}

const RECORD_TTL_MS = 5_000;

export class SqsService {
  readonly client: QueueClient;
  readonly nc: NatsConnection;
  readonly registry: SqsRegistry;
  readonly lifecycle: Lifecycle;
  readonly prefix: string;
  readonly namespace: string;
  readonly log: Logger;
  private readonly records = new Map<string, { record: QueueRecord; at: number }>();

  constructor(deps: { client: QueueClient; nc: NatsConnection; registry: SqsRegistry; lifecycle: Lifecycle; prefix: string; namespace: string; log: Logger }) {
    this.client = deps.client;
    this.nc = deps.nc;
    this.registry = deps.registry;
    this.lifecycle = deps.lifecycle;
    this.prefix = deps.prefix;
    this.namespace = deps.namespace;
    this.log = deps.log;
  }

  /** The queue name a request addresses. */
  queueName(input: Input, ctx: RequestContext): string {
    const url = input.QueueUrl;
    if (url === undefined || url === null || url === '') {
      if (ctx.pathQueue !== undefined) return ctx.pathQueue;
      throw Sqs.missingParameter('QueueUrl');
    }
    if (typeof url !== 'string') throw Sqs.invalidParameterValue('Value for parameter QueueUrl is invalid: expected a string.');
    return queueFromUrl(url, this.namespace);
  }

  /** The native queue context; QueueDoesNotExist when there is none. */
  async queue(name: string): Promise<QueueCtx> {
    let ctx: QueueCtx;
    try {
      ctx = await this.client.queue(name);
    } catch (err) {
      throw toSqsError(err);
    }
    const rec = await this.record(name, ctx);
    if (rec.spec !== undefined) {
      const { deadLetter, ...rest } = rec.spec;
      const want: QueueSpec = { ...ctx.spec, ...rest };
      if (deadLetter === null) delete want.deadLetter;
      else if (deadLetter !== undefined) want.deadLetter = deadLetter;
      if (JSON.stringify(want) !== JSON.stringify(ctx.spec) && want.replicaCount <= want.hosts) {
        this.log.info('re-applying queue settings set through SQS', { queue: name, was: ctx.spec, now: want });
        await this.writeSpec(ctx, want);
      }
    }
    return ctx;
  }

  async writeSpec(ctx: QueueCtx, spec: QueueSpec): Promise<void> {
    try {
      await writeQueueConfig(this.nc, { prefix: this.prefix, namespace: this.namespace }, spec, 'sqs');
      ctx.spec = spec;
    } catch (err) {
      throw Sqs.unavailable(`Writing the settings of queue "${spec.name}" failed: ${describeError(err)}`, err);
    }
  }

  /** The SQS record of a queue, created on first use (created time = its meta stream's). */
  async record(name: string, ctx?: QueueCtx): Promise<QueueRecord> {
    const now = performance.now();
    const cached = this.records.get(name);
    if (cached !== undefined && now - cached.at < RECORD_TTL_MS) return cached.record;
    let record: QueueRecord;
    try {
      const got = await this.registry.get(name);
      record = got?.record ?? (await this.updateRecord(name, (r) => r, await this.createdAt(name, ctx)));
    } catch (err) {
      if (cached !== undefined) return cached.record;
      throw toSqsError(err);
    }
    this.records.set(name, { record, at: now });
    return record;
  }

  async updateRecord(name: string, change: (r: QueueRecord) => QueueRecord, createdAt?: number): Promise<QueueRecord> {
    const at = createdAt ?? Math.floor(Date.now() / 1000);
    try {
      const r = await this.registry.update(name, () => ({ createdAt: at, modifiedAt: at, stored: {}, tags: {} }), change);
      this.records.set(name, { record: r, at: performance.now() });
      return r;
    } catch (err) {
      if (err instanceof SqsError) throw err;
      throw Sqs.unavailable(`Updating the SQS record of queue "${name}" failed: ${describeError(err)}`, err);
    }
  }

  forget(name: string): void {
    this.records.delete(name);
  }

  private async createdAt(name: string, ctx?: QueueCtx): Promise<number> {
    try {
      const jsm = await jetstreamManager(this.nc, { checkAPI: false });
      const info = await jsm.streams.info(queueNames(this.prefix, this.namespace, name).metaStream);
      return Math.floor(Date.parse(info.created) / 1000);
    } catch (err) {
      this.log.debug('no creation time for the queue; using now', { queue: ctx?.name ?? name, error: describeError(err) });
      return Math.floor(Date.now() / 1000);
    }
  }

  /** Every queue of the namespace, by name (from the meta streams' descriptions). */
  async listQueues(): Promise<string[]> {
    const jsm = await jetstreamManager(this.nc, { checkAPI: false });
    const names: string[] = [];
    const streamPrefix = queueNames(this.prefix, this.namespace, 'x').metaStream.slice(0, -1);
    for await (const s of jsm.streams.list()) {
      if (!s.config.name.startsWith(streamPrefix)) continue;
      const m = /^Castellan replicated queue (\S+):/.exec(s.config.description ?? '');
      if (m !== null && queueNames(this.prefix, this.namespace, m[1] as string).metaStream === s.config.name) names.push(m[1] as string);
    }
    return names.sort();
  }
}
