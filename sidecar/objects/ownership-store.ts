/**
 * JetStream adapter for durable objects: the per-class stream and the
 * compare-and-set reads/writes of owner and host records (lease.ts explains
 * what the records mean). The only file here that talks to JetStream.
 *
 * Reads that feed a compare-and-set go to the stream leader
 * (STREAM.MSG.GET), so they are never older than the last acknowledged write;
 * the bulk host listing uses direct gets (any replica, may lag: only delays).
 */
import { jetstream, jetstreamManager, JetStreamApiError, type JetStreamClient, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.ts';
import { describeError } from '../../common/logger.ts';
import type { HostRecord, OwnerRecord } from './lease.ts';
import { classNames, type ClassNames } from './subjects.ts';

export interface Stored<T> {
  seq: number;
  record: T;
}

import { CONFLICT, isCasConflict, type CasResult } from '../nats-errors.ts';

export { CONFLICT, type CasResult };

const JS_STREAM_NOT_FOUND = 10059;
const JS_INSUFFICIENT_RESOURCES = 10023;
const JS_REPLICAS_NOT_SUPPORTED = 10074;
/** "No suitable peers for placement" (fewer servers than replicas). */
const JS_NO_SUITABLE_PEERS = 10005;

/** Whether JetStream refused a stream config because it cannot place that many replicas now. */
function cannotPlace(err: unknown): boolean {
  const code = err instanceof JetStreamApiError ? err.code : 0;
  return code === JS_INSUFFICIENT_RESOURCES || code === JS_REPLICAS_NOT_SUPPORTED || code === JS_NO_SUITABLE_PEERS || /no suitable peers/i.test(describeError(err));
}

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(d: Uint8Array) => JSON.parse(new TextDecoder().decode(d)) as T;

export interface ObjectStoreOptions {
  prefix: string;
  namespace: string;
  /** JetStream API / publish timeout (ms). */
  timeoutMs: number;
  log: Logger;
}

export class ObjectStore {
  readonly js: JetStreamClient;
  private readonly opts: ObjectStoreOptions;
  private jsmP: Promise<JetStreamManager> | undefined;
  private adminP: Promise<JetStreamManager> | undefined;
  private readonly nc: NatsConnection;
  private readonly known = new Map<string, { exists: boolean; at: number }>();

  constructor(nc: NatsConnection, opts: ObjectStoreOptions) {
    this.nc = nc;
    this.opts = opts;
    this.js = jetstream(nc, { timeout: opts.timeoutMs });
  }

  names(cls: string): ClassNames {
    return classNames(this.opts.prefix, this.opts.namespace, cls);
  }

  private jsm(): Promise<JetStreamManager> {
    this.jsmP ??= jetstreamManager(this.nc, { timeout: this.opts.timeoutMs, checkAPI: false }).catch((err: unknown) => {
      this.jsmP = undefined;
      throw err;
    });
    return this.jsmP;
  }

  /** A manager with a generous timeout for stream administration (R3 creation takes a while). */
  private admin(): Promise<JetStreamManager> {
    this.adminP ??= jetstreamManager(this.nc, { timeout: 15_000, checkAPI: false }).catch((err: unknown) => {
      this.adminP = undefined;
      throw err;
    });
    return this.adminP;
  }

  /**
   * Creates the class stream if missing (object hosts do this at start) with
   * `replicas` replicas, or as many as the cluster can place now (a server
   * down: fewer; a single server: 1). Resolves with the replicas it has.
   */
  async ensureStream(cls: string, replicas: number): Promise<number> {
    const n = this.names(cls);
    const jsm = await this.admin();
    const config: Partial<StreamConfig> & { name: string } = {
      name: n.stream,
      subjects: [n.all],
      num_replicas: replicas,
      max_msgs_per_subject: 1,
      allow_direct: true,
      allow_atomic: true,
      // Alarms are message schedules; storage tombstones expire (sidecar/storage, sidecar/alarms).
      allow_msg_schedules: true,
      allow_msg_ttl: true,
      description: `Castellan durable objects: ownership, host leases and storage of class ${cls}`,
    };
    try {
      const info = await jsm.streams.info(n.stream);
      if (info.config.allow_msg_schedules !== true || info.config.allow_msg_ttl !== true) {
        await jsm.streams.update(n.stream, { ...info.config, allow_msg_schedules: true, allow_msg_ttl: true });
        this.opts.log.info('enabled message schedules and TTLs on the object stream', { stream: n.stream });
      }
      this.known.set(cls, { exists: true, at: performance.now() });
      return info.config.num_replicas;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JS_STREAM_NOT_FOUND)) throw err;
    }
    let created: number;
    for (let r = replicas; ; ) {
      try {
        await jsm.streams.add({ ...config, num_replicas: r });
        this.opts.log.info('created object stream', { stream: n.stream, replicas: r });
        created = r;
        break;
      } catch (err) {
        const code = err instanceof JetStreamApiError ? err.code : 0;
        if (r > 1 && cannotPlace(err)) {
          const next = code === JS_REPLICAS_NOT_SUPPORTED ? 1 : r - 1;
          this.opts.log.warn('the cluster cannot place the stream with this many replicas now; trying fewer', { stream: n.stream, tried: r, next });
          r = next;
          continue;
        }
        if (/already in use|already exists/i.test(describeError(err))) {
          created = (await jsm.streams.info(n.stream)).config.num_replicas;
          break;
        }
        if (config.allow_atomic === true && /atomic/i.test(describeError(err))) {
          delete config.allow_atomic;
          continue;
        }
        throw err;
      }
    }
    this.known.set(cls, { exists: true, at: performance.now() });
    return created;
  }

  /**
   * Raises the class stream to `replicas` replicas if it has fewer and the
   * cluster can place them now. Resolves with the replicas it has afterwards.
   */
  async raiseReplicas(cls: string, replicas: number): Promise<number> {
    const n = this.names(cls);
    const jsm = await this.admin();
    const info = await jsm.streams.info(n.stream);
    const have = info.config.num_replicas;
    if (have >= replicas) return have;
    try {
      await jsm.streams.update(n.stream, { ...info.config, num_replicas: replicas });
      return replicas;
    } catch (err) {
      if (cannotPlace(err)) return have;
      throw err;
    }
  }

  /** Whether the class exists (its stream does). Cached: known classes 30 s, unknown 1 s. */
  async classExists(cls: string): Promise<boolean> {
    const k = this.known.get(cls);
    const now = performance.now();
    if (k !== undefined && now - k.at < (k.exists ? 30_000 : 1_000)) return k.exists;
    const jsm = await this.jsm();
    let exists = true;
    try {
      await jsm.streams.info(this.names(cls).stream);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JS_STREAM_NOT_FOUND)) throw err;
      exists = false;
    }
    this.known.set(cls, { exists, at: now });
    return exists;
  }

  private async last<T>(cls: string, subject: string): Promise<Stored<T> | undefined> {
    const jsm = await this.jsm();
    const m = await jsm.streams.getMessage(this.names(cls).stream, { last_by_subj: subject });
    if (m === null) return undefined;
    return { seq: m.seq, record: dec<T>(m.data) };
  }

  private async cas(subject: string, record: unknown, expectSeq: number): Promise<CasResult> {
    try {
      const ack = await this.js.publish(subject, enc(record), { expect: { lastSubjectSequence: expectSeq }, timeout: this.opts.timeoutMs });
      return ack.seq;
    } catch (err) {
      if (isCasConflict(err)) return CONFLICT;
      throw err;
    }
  }

  readOwner(cls: string, encId: string): Promise<Stored<OwnerRecord> | undefined> {
    return this.last<OwnerRecord>(cls, this.names(cls).owner(encId));
  }

  /** Writes an owner record if the subject's last sequence is still `expectSeq` (0 = absent). */
  writeOwner(cls: string, encId: string, expectSeq: number, record: OwnerRecord): Promise<CasResult> {
    return this.cas(this.names(cls).owner(encId), record, expectSeq);
  }

  readHost(cls: string, pod: string): Promise<Stored<HostRecord> | undefined> {
    return this.last<HostRecord>(cls, this.names(cls).host(pod));
  }

  writeHost(cls: string, pod: string, expectSeq: number, record: HostRecord): Promise<CasResult> {
    return this.cas(this.names(cls).host(pod), record, expectSeq);
  }

  /** The last record of every host of the class (direct get; may lag slightly). */
  async listHosts(cls: string): Promise<Stored<HostRecord>[]> {
    const jsm = await this.jsm();
    const n = this.names(cls);
    const out: Stored<HostRecord>[] = [];
    try {
      const it = await jsm.direct.getLastMessagesFor(n.stream, { multi_last: [n.hosts] });
      for await (const m of it) out.push({ seq: m.seq, record: dec<HostRecord>(m.data) });
    } catch (err) {
      if (/no messages|not found|404/i.test(describeError(err))) return out;
      throw err;
    }
    return out;
  }
}
