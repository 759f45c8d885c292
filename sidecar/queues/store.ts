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

/** Messages per direct-get batch of a scan (the most one direct-get batch request returns). */
export const SCAN_PAGE = 1_024;

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
  /** The primary's session when it stored the message: the first holder (takeover.ts). */
  ps?: string;
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

  /**
   * Every message of `stream` on `filter` from sequence `fromSeq` on, in pages
   * (direct get batches of at most PAGE): JetStream answers any number of
   * subjects this way, where one multi-subject request refuses more than 1,024.
   * Both streams keep one message per subject, so this is the last record of
   * every subject. Returns the last sequence seen (fromSeq − 1 when none).
   * `filter` undefined reads every message of the stream: about 3× faster for
   * the server than a wildcard filter (no next-by-subject search per message).
   */
  async scan(stream: string, filter: string | undefined, each: (m: { subject: string; seq: number; data: Uint8Array }) => void | Promise<void>, fromSeq = 1): Promise<number> {
    const jsm = await this.jsm();
    let seq = Math.max(1, fromSeq);
    let last = seq - 1;
    for (;;) {
      let got = 0;
      let pending = 0;
      try {
        const it = await jsm.direct.getBatch(stream, filter === undefined ? { seq, batch: SCAN_PAGE } : { seq, batch: SCAN_PAGE, next_by_subj: filter });
        for await (const m of it) {
          got++;
          last = m.seq;
          pending = m.pending;
          await each({ subject: m.subject, seq: m.seq, data: m.data });
        }
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (got === 0 || pending <= 0) return last;
      seq = last + 1;
      // A turn for timers and other requests (heartbeats, RPCs) between pages of a long scan.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** The last record of every meta subject matching `filter`, paged (scan). */
  async list<T>(filter: string): Promise<{ subject: string; seq: number; record: T }[]> {
    const out: { subject: string; seq: number; record: T }[] = [];
    await this.scan(this.names.metaStream, filter, (m) => {
      out.push({ subject: m.subject, seq: m.seq, record: dec<T>(m.data) });
    });
    return out;
  }

  // ---- a host's replicas ----

  async putMessage(pod: string, m: StoredMessage): Promise<void> {
    await this.js.publish(this.names.message(pod, m.id), enc(m), { timeout: this.timeoutMs });
  }

  async putState(pod: string, id: string, s: MessageState): Promise<void> {
    await this.js.publish(this.names.state(pod, id), enc(s), { timeout: this.timeoutMs });
  }

  /** One stored replica (its body lives only here, not in the host's memory); undefined when gone. */
  async getMessage(pod: string, id: string): Promise<StoredMessage | undefined> {
    const jsm = await this.jsm();
    try {
      const m = await jsm.direct.getMessage(this.names.hostStream(pod), { last_by_subj: this.names.message(pod, id) });
      return m === null ? undefined : dec<StoredMessage>(m.data);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Messages in `pod`'s host stream (copies, their states and the purge mark): an upper bound of its copies. */
  async hostStreamMessages(pod: string): Promise<number> {
    const jsm = await this.jsm();
    return (await jsm.streams.info(this.names.hostStream(pod))).state.messages;
  }

  /** Removes both subjects of a message from the host stream. */
  async deleteMessage(pod: string, id: string): Promise<void> {
    const jsm = await this.jsm();
    await jsm.streams.purge(this.names.hostStream(pod), { filter: this.names.messageAll(pod, id) });
  }

  /** Records that this host applied a purge up to `before` (survives restarts; one subject). */
  async putPurgeMark(pod: string, before: number): Promise<void> {
    await this.js.publish(this.names.purgeMark(pod), enc({ before }), { timeout: this.timeoutMs });
  }

  /**
   * Every record of `pod`'s host stream, in stream order and in pages (scan):
   * replicas (with the stored record's byte length, an upper bound of their
   * body and attributes as JSON), their latest states and the purge mark.
   * Works for any number of replicas; the caller keeps what it needs of each
   * (no body outlives its callback).
   */
  async loadAll(pod: string, each: HostStreamVisitor): Promise<void> {
    const mPrefix = this.names.message(pod, '');
    const sPrefix = this.names.state(pod, '');
    const purge = this.names.purgeMark(pod);
    // The host stream holds only this host's subjects (hostAll): no filter needed.
    await this.scan(this.names.hostStream(pod), undefined, (m) => {
      if (m.subject.startsWith(mPrefix)) each.message(dec<StoredMessage>(m.data), m.data.length);
      else if (m.subject.startsWith(sPrefix)) each.state(m.subject.slice(sPrefix.length), dec<MessageState>(m.data));
      else if (m.subject === purge) each.purge(dec<{ before: number }>(m.data).before);
    });
  }
}

export interface HostStreamVisitor {
  /** `size`: bytes of the stored record (≥ the JSON bytes of its body and attributes). */
  message(m: StoredMessage, size: number): void;
  state(id: string, s: MessageState): void;
  purge(before: number): void;
}
