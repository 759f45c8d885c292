/**
 * What SQS knows about a queue that the native queue does not (NATS KV, I/O):
 * creation and modification times, the SQS-only attributes
 * (queue-attributes.ts), tags, and the spec settings last set through SQS,
 * in bucket `<PREFIX>_sqs_<namespace>` under key `q.<queue>`; and the first
 * receive time of messages whose receivers asked for
 * ApproximateFirstReceiveTimestamp, in bucket `<PREFIX>_sqsfr_<namespace>`
 * (entries expire after 15 days, longer than any message lives).
 *
 * Records are updated with compare-and-set on the KV revision, so two
 * sidecars changing attributes or tags at once both keep their change.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { sanitizeToken } from '../objects/subjects.ts';
import type { QueueSpec } from '../queues/spec.ts';

/** Spec settings set through SQS; `deadLetter: null` records a removed RedrivePolicy. */
export type SpecOverrides = Partial<Omit<QueueSpec, 'deadLetter' | 'name' | 'hosts'>> & { deadLetter?: QueueSpec['deadLetter'] | null };

export interface QueueRecord {
  /** Epoch seconds. */
  createdAt: number;
  modifiedAt: number;
  stored: Record<string, string>;
  tags: Record<string, string>;
  /** Spec settings set through SQS; re-applied if a host restart writes older ones back. */
  spec?: SpecOverrides;
}

const FIRST_RECEIVE_TTL_MS = 15 * 86_400_000;
const enc = new TextEncoder();
const dec = new TextDecoder();

export class SqsRegistry {
  private readonly nc: NatsConnection;
  private readonly bucket: string;
  private readonly frBucket: string;
  private readonly log: Logger;
  private kv?: Promise<KV>;
  private fr?: Promise<KV>;

  constructor(nc: NatsConnection, prefix: string, namespace: string, log: Logger) {
    this.nc = nc;
    this.bucket = `${sanitizeToken(prefix)}_sqs_${sanitizeToken(namespace)}`;
    this.frBucket = `${sanitizeToken(prefix)}_sqsfr_${sanitizeToken(namespace)}`;
    this.log = log;
  }

  private open(name: string, ttl?: number): Promise<KV> {
    const kvm = new Kvm(this.nc);
    const create = async (replicas: number) => kvm.create(name, { history: 1, replicas, ...(ttl === undefined ? {} : { ttl }) });
    return create(3).catch(async (err: unknown) => {
      this.log.debug('KV bucket with 3 replicas not possible; using 1', { bucket: name, error: describeError(err) });
      return create(1);
    });
  }

  private queues(): Promise<KV> {
    this.kv ??= this.open(this.bucket).catch((err: unknown) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }

  private firsts(): Promise<KV> {
    this.fr ??= this.open(this.frBucket, FIRST_RECEIVE_TTL_MS).catch((err: unknown) => {
      this.fr = undefined;
      throw err;
    });
    return this.fr;
  }

  async get(queue: string): Promise<{ record: QueueRecord; revision: number } | undefined> {
    const kv = await this.queues();
    const e = await kv.get(`q.${queue}`);
    if (e === null || e.operation !== 'PUT' || e.value.length === 0) return undefined;
    return { record: JSON.parse(dec.decode(e.value)) as QueueRecord, revision: e.revision };
  }

  /** Reads, changes and writes back the record (creating it from `initial`), retrying on a concurrent change. */
  async update(queue: string, initial: () => QueueRecord, change: (r: QueueRecord) => QueueRecord): Promise<QueueRecord> {
    const kv = await this.queues();
    for (let attempt = 0; ; attempt++) {
      const cur = await this.get(queue);
      const next = change(cur?.record ?? initial());
      try {
        if (cur === undefined) await kv.create(`q.${queue}`, enc.encode(JSON.stringify(next)));
        else await kv.update(`q.${queue}`, enc.encode(JSON.stringify(next)), cur.revision);
        return next;
      } catch (err) {
        if (attempt >= 10) throw err;
        this.log.debug('queue record changed concurrently; retrying', { queue, error: describeError(err) });
      }
    }
  }

  async remove(queue: string): Promise<void> {
    const kv = await this.queues();
    await kv.purge(`q.${queue}`);
  }

  /** Records the first receive time unless one exists; returns the stored one. */
  async firstReceive(queue: string, id: string, now: number): Promise<number> {
    const kv = await this.firsts();
    const key = `f.${queue}.${id}`;
    try {
      await kv.create(key, enc.encode(String(now)));
      return now;
    } catch {
      const e = await kv.get(key);
      return e === null ? now : Number(dec.decode(e.value));
    }
  }
}
