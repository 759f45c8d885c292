/**
 * JetStream adapter of replicated queues (the only file here that reads or
 * writes streams): meta records (host leases, claims, tombstones, dedup
 * markers) with compare-and-set, and a host's replicas in its host stream.
 * Every write is awaited until JetStream acknowledged it (the test and dev
 * clusters run with `sync_interval: always`, so an ack means fsynced).
 */
import { jetstream, jetstreamManager, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../../common/logger.ts';
import { readQueueConfig } from './assets.ts';
import type { QueueNames } from './names.ts';
import type { ConfigRecord } from './spec.ts';

export interface Stored<T> {
  seq: number;
  record: T;
}

import { CONFLICT, isCasConflict, type CasResult } from '../nats-errors.ts';

export { CONFLICT, type CasResult };

const JS_STREAM_NOT_FOUND = 10059;

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(d: Uint8Array) => JSON.parse(new TextDecoder().decode(d)) as T;

function isNotFound(err: unknown): boolean {
  return (err instanceof JetStreamApiError && err.code === JS_STREAM_NOT_FOUND) || /no message found|no messages|not found|404/i.test(describeError(err));
}

/** TTL header value for a duration in ms (whole seconds, at least 1). */
export function ttlOf(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

/** The immutable part of a replica (`…h.<pod>.m.<id>`). */
export interface StoredMessage {
  id: string;
  body: string;
  attributes: Record<string, string>;
  enqueuedAt: number;
  visibleAt: number;
  primary: string;
  replicas: string[];
}

/** The mutable part (`…h.<pod>.s.<id>`). */
export interface MessageState {
  receiveCount: number;
  invisibleUntil: number;
  replicas?: string[];
}

export class QueueStore {
  readonly names: QueueNames;
  readonly js: JetStreamClient;
  private readonly nc: NatsConnection;
  private readonly timeoutMs: number;
  private jsmP: Promise<JetStreamManager> | undefined;

  constructor(nc: NatsConnection, names: QueueNames, timeoutMs: number) {
    this.nc = nc;
    this.names = names;
    this.timeoutMs = timeoutMs;
    this.js = jetstream(nc, { timeout: timeoutMs });
  }

  jsm(): Promise<JetStreamManager> {
    this.jsmP ??= jetstreamManager(this.nc, { timeout: this.timeoutMs, checkAPI: false }).catch((err: unknown) => {
      this.jsmP = undefined;
      throw err;
    });
    return this.jsmP;
  }

  async readConfig(): Promise<ConfigRecord | undefined> {
    return readQueueConfig(await this.jsm(), this.names);
  }

  /** Last record on a meta subject, read from the stream leader (never older than the last acknowledged write). */
  async last<T>(subject: string): Promise<Stored<T> | undefined> {
    const jsm = await this.jsm();
    try {
      const m = await jsm.streams.getMessage(this.names.metaStream, { last_by_subj: subject });
      if (m === null) return undefined;
      return { seq: m.seq, record: dec<T>(m.data) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Writes a meta record if the subject's last sequence is still `expectSeq` (0 = absent). */
  async cas(subject: string, record: unknown, expectSeq: number, ttlMs?: number): Promise<CasResult> {
    try {
      const ack = await this.js.publish(subject, enc(record), {
        expect: { lastSubjectSequence: expectSeq },
        timeout: this.timeoutMs,
        ...(ttlMs === undefined ? {} : { ttl: ttlOf(ttlMs) }),
      });
      return ack.seq;
    } catch (err) {
      if (isCasConflict(err)) return CONFLICT;
      throw err;
    }
  }

  async put(subject: string, record: unknown, ttlMs?: number): Promise<number> {
    const ack = await this.js.publish(subject, enc(record), { timeout: this.timeoutMs, ...(ttlMs === undefined ? {} : { ttl: ttlOf(ttlMs) }) });
    return ack.seq;
  }

  async purgeMeta(subject: string): Promise<void> {
    const jsm = await this.jsm();
    await jsm.streams.purge(this.names.metaStream, { filter: subject });
  }

  /** The last record of every meta subject matching `filter` (direct get; may lag slightly). */
  async list<T>(filter: string): Promise<{ subject: string; seq: number; record: T }[]> {
    const jsm = await this.jsm();
    const out: { subject: string; seq: number; record: T }[] = [];
    try {
      const it = await jsm.direct.getLastMessagesFor(this.names.metaStream, { multi_last: [filter] });
      for await (const m of it) out.push({ subject: m.subject, seq: m.seq, record: dec<T>(m.data) });
    } catch (err) {
      if (isNotFound(err)) return out;
      throw err;
    }
    return out;
  }

  // ---- a host's replicas ----

  async putMessage(pod: string, m: StoredMessage): Promise<void> {
    await this.js.publish(this.names.message(pod, m.id), enc(m), { timeout: this.timeoutMs });
  }

  async putState(pod: string, id: string, s: MessageState): Promise<void> {
    await this.js.publish(this.names.state(pod, id), enc(s), { timeout: this.timeoutMs });
  }

  /** Removes both subjects of a message from the host stream. */
  async deleteMessage(pod: string, id: string): Promise<void> {
    const jsm = await this.jsm();
    await jsm.streams.purge(this.names.hostStream(pod), { filter: this.names.messageAll(pod, id) });
  }

  /** Every replica stored for `pod`, in stream order, with its latest state. */
  async loadAll(pod: string): Promise<Map<string, { msg: StoredMessage; state?: MessageState }>> {
    const out = new Map<string, { msg: StoredMessage; state?: MessageState }>();
    const stream = this.names.hostStream(pod);
    const jsm = await this.jsm();
    const info = await jsm.streams.info(stream);
    if (info.state.messages === 0) return out;
    const states = new Map<string, MessageState>();
    const mPrefix = this.names.message(pod, '');
    const sPrefix = this.names.state(pod, '');
    // An ordered consumer read in fetches: a fetch that comes back empty ends the scan even if
    // messages vanished (max_age) between the info and the read.
    const consumer = await this.js.consumers.get(stream);
    for (let done = false; !done; ) {
      const batch = await consumer.fetch({ max_messages: 512, expires: 2_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        if (m.subject.startsWith(mPrefix)) {
          const msg = dec<StoredMessage>(m.data);
          out.set(msg.id, { msg });
        } else if (m.subject.startsWith(sPrefix)) {
          states.set(m.subject.slice(sPrefix.length), dec<MessageState>(m.data));
        }
        if (m.info.pending === 0) done = true;
      }
      if (got === 0) done = true;
    }
    for (const [id, s] of states) {
      const e = out.get(id);
      if (e !== undefined) e.state = s;
    }
    return out;
  }
}
