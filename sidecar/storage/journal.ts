/**
 * JetStream adapter of object storage: the only file here that talks to NATS.
 *
 * Layout, in the class stream (max_msgs_per_subject 1, allow_atomic):
 * - one subject per key, `…kv.<encId>.<sha256(key) base64url>`; the message
 *   payload is the raw value, header `Castellan-Key` the key (base64url of its
 *   UTF-8), and its stream sequence the key's version. Hashing keeps subjects
 *   short whatever the key (keys are up to 2 KiB).
 * - a delete is a tombstone on the key's subject (header `Castellan-Op: del`)
 *   that replaces the value and expires after TOMBSTONE_TTL (Nats-TTL).
 *
 * Commit = one NATS 2.12 atomic batch (ADR-50: Nats-Batch-Id / -Sequence /
 * -Commit), or a plain publish for a single message. The first message
 * without a key check carries the fence
 * `Nats-Expected-Last-Subject-Sequence: <token>` with
 * `Nats-Expected-Last-Subject-Sequence-Subject: <owner subject>`: the server
 * applies the whole batch only if the object's owner record is still the one
 * this activation claimed (its sequence is the fencing token). A stale owner's
 * batch is rejected whole ("wrong last sequence"); one fenced message is
 * enough because a batch lands whole or not at all. Acks come after the
 * replicated, synced store (the stream's replicas, sync_interval always).
 */
import { createHash, randomUUID } from 'node:crypto';
import { AckPolicy, DeliverPolicy, jetstreamManager, type JetStreamManager, type MsgRequest } from '@nats-io/jetstream';
import { createInbox, headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/transport-node';
import { Errors, type CastellanError } from '../../common/errors.ts';
import { describeError, logger } from '../../common/logger.ts';
import type { ClassNames } from '../objects/subjects.ts';
import { isNoMessage } from '../nats-errors.ts';
import type { Entry, UnorderedKeys } from './key-index.ts';

export const TOMBSTONE_TTL = '1h';
/** Room for subject-independent headers (key up to 2 KiB as base64url, fence, batch). */
const HEADER_ALLOWANCE = 8 * 1024;
const JS_WRONG_LAST_SEQUENCE = 10071;

export function keyToken(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('base64url');
}

export interface OutMessage {
  subject: string;
  data: Uint8Array;
  headers: Record<string, string>;
  /**
   * A per-key condition JetStream enforces instead of the ownership fence on
   * this message: the last sequence of `subject` (default: the message's own
   * subject) must be `seq`. A batch with such messages also carries the fence
   * on at least one message (checkMessage / fenceMessage).
   */
  expect?: { seq: number; subject?: string };
}

/** How long a check message stays in the stream (it only matters while its batch commits). */
const CHECK_TTL = '1m';

/** A message whose only job is to make JetStream check that `keySubject` is still at `seq`. */
export function checkMessage(names: ClassNames, encId: string, keySubject: string, seq: number): OutMessage {
  return { subject: names.chk(encId), data: new Uint8Array(0), headers: { 'Nats-TTL': CHECK_TTL }, expect: { seq, subject: keySubject } };
}

/** A message that carries only the ownership fence (for batches whose other messages all carry key checks). */
export function fenceMessage(names: ClassNames, encId: string): OutMessage {
  return { subject: names.chk(encId), data: new Uint8Array(0), headers: { 'Nats-TTL': CHECK_TTL } };
}

export function putMessage(names: ClassNames, encId: string, key: string, value: Uint8Array): OutMessage {
  return { subject: names.kv(encId, keyToken(key)), data: value, headers: { 'Castellan-Key': Buffer.from(key, 'utf8').toString('base64url') } };
}

export function deleteMessage(names: ClassNames, encId: string, key: string): OutMessage {
  return {
    subject: names.kv(encId, keyToken(key)),
    data: new Uint8Array(0),
    headers: { 'Castellan-Key': Buffer.from(key, 'utf8').toString('base64url'), 'Castellan-Op': 'del', 'Nats-TTL': TOMBSTONE_TTL },
  };
}

/** The writer no longer owns the object at its token: nothing was written. */
export class FencedError extends Error {
  override name = 'FencedError';
}

/** The batch was refused by the server: nothing was written. */
export class RejectedError extends Error {
  override name = 'RejectedError';
}

/**
 * "Wrong last sequence" for a batch that carried per-key checks as well as
 * the fence: nothing was written, but either a key check or the fence failed
 * (the caller tells them apart by reading the owner record).
 */
export class CheckFailedError extends Error {
  override name = 'CheckFailedError';
}

/** No answer: the batch may or may not have been applied. */
export class IndeterminateError extends Error {
  override name = 'IndeterminateError';
}

interface BatchAck {
  stream?: string;
  seq?: number;
  count?: number;
  error?: { code?: number; err_code?: number; description?: string };
}

export interface LoadedObject {
  entries: Map<string, Entry>;
}

/** An object's live keys (with versions and value sizes), and the values the load read along (small objects). */
export interface LoadedIndex extends UnorderedKeys {
  values: Map<string, Entry>;
  /** Deleted keys whose tombstone is still in the stream, with its sequence. */
  tombstones: Map<string, number>;
}

/** A value read by version was not there: the index that named it is not current. */
export class StaleVersionError extends Error {
  override name = 'StaleVersionError';
}

/** An object whose values together stay below this is loaded with its values in one direct get. */
const SMALL_OBJECT_BYTES = 256 * 1024;
/** Messages per pull of the keys-only load. */
const PULL_BATCH = 1_000;
/** Pulls of a key load answered "no responders" (a consumer not yet taking pulls) that are asked again, 20 ms × n apart (≈ 4 s in all). */
const MAX_PULL_NO_RESPONDERS = 20;
/** Subjects per direct multi-last get when reading listed values, and bytes per such get. */
const VALUES_PER_GET = 256;
const BYTES_PER_GET = 8 * 1024 * 1024;

const log = logger('storage.journal');
const notFound = isNoMessage;

export class Journal {
  private readonly nc: NatsConnection;
  private readonly timeoutMs: number;
  private jsmP: Promise<JetStreamManager> | undefined;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.nc = nc;
    this.timeoutMs = timeoutMs;
  }

  private jsm(): Promise<JetStreamManager> {
    this.jsmP ??= jetstreamManager(this.nc, { timeout: this.timeoutMs, checkAPI: false }).catch((err: unknown) => {
      this.jsmP = undefined;
      throw err;
    });
    return this.jsmP;
  }

  /**
   * Commits `msgs` atomically if the owner record of the object is still at
   * `token`. Returns the stream sequence of each message (its version).
   */
  /** 413 when the NATS server cannot take this message (its max_payload), else undefined. */
  tooLarge(m: OutMessage): CastellanError | undefined {
    const maxPayload = this.nc.info?.max_payload;
    const size = m.data.length + m.subject.length + HEADER_ALLOWANCE;
    if (maxPayload === undefined || size <= maxPayload) return undefined;
    return Errors.payloadTooLarge(
      `A storage message of ${size} bytes exceeds the NATS server's max_payload (${maxPayload}); values up to 1 MiB need max_payload ≥ ${1024 * 1024 + HEADER_ALLOWANCE + 4096} (docs/storage.md).`,
    );
  }

  async commit(names: ClassNames, encId: string, token: number, msgs: readonly OutMessage[]): Promise<number[]> {
    if (msgs.length === 0) return [];
    for (const m of msgs) {
      const e = this.tooLarge(m);
      if (e !== undefined) throw e;
    }
    const batchId = randomUUID();
    const owner = names.owner(encId);
    // Big batches take a while to replicate: one extra second per 4 MiB.
    const bytes = msgs.reduce((n, m) => n + m.data.length, 0);
    const timeout = this.timeoutMs + Math.ceil(bytes / (4 * 1024 * 1024)) * 1_000;
    let reply;
    // The batch is all-or-nothing, so one fenced message fences all of it: the
    // server then checks the owner record once per batch, not once per message.
    let fenced = false;
    try {
      for (let i = 0; i < msgs.length; i++) {
        const m = msgs[i]!;
        const h = natsHeaders();
        for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
        // A single message needs no batch: the same fence headers make a plain publish conditional.
        const batched = msgs.length > 1;
        if (batched) {
          h.set('Nats-Batch-Id', batchId);
          h.set('Nats-Batch-Sequence', String(i + 1));
        }
        if (m.expect === undefined) {
          if (!fenced) {
            h.set('Nats-Expected-Last-Subject-Sequence', String(token));
            h.set('Nats-Expected-Last-Subject-Sequence-Subject', owner);
            fenced = true;
          }
        } else {
          h.set('Nats-Expected-Last-Subject-Sequence', String(m.expect.seq));
          if (m.expect.subject !== undefined) h.set('Nats-Expected-Last-Subject-Sequence-Subject', m.expect.subject);
        }
        if (i < msgs.length - 1) {
          this.nc.publish(m.subject, m.data, { headers: h });
        } else {
          if (batched) h.set('Nats-Batch-Commit', '1');
          reply = await this.nc.request(m.subject, m.data, { headers: h, timeout });
        }
      }
    } catch (err) {
      if (/no responders/i.test(describeError(err))) throw new RejectedError(`storage stream not reachable: ${describeError(err)}`);
      throw new IndeterminateError(`commit not acknowledged: ${describeError(err)}`);
    }
    let ack: BatchAck;
    try {
      ack = JSON.parse(new TextDecoder().decode(reply!.data)) as BatchAck;
    } catch (err) {
      throw new IndeterminateError(`unreadable commit acknowledgement: ${describeError(err)}`);
    }
    if (ack.error !== undefined) {
      const text = ack.error.description ?? 'unknown error';
      if (ack.error.err_code === JS_WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(text)) {
        if (msgs.some((m) => m.expect !== undefined)) throw new CheckFailedError(`a key check or the ownership fence failed: ${text}`);
        throw new FencedError(`ownership moved: ${text}`);
      }
      throw new RejectedError(`commit refused by JetStream: ${text} (${ack.error.err_code ?? ack.error.code ?? '?'})`);
    }
    if (typeof ack.seq !== 'number' || (msgs.length > 1 && ack.count !== msgs.length)) {
      throw new IndeterminateError(`unexpected commit acknowledgement ${JSON.stringify(ack)}`);
    }
    const first = ack.seq - msgs.length + 1;
    return msgs.map((_, i) => first + i);
  }

  /**
   * Reads every live key of an object WITH its value (operator inspection,
   * sidecar/listing/inspect.ts; activation uses loadIndex). The read is served by one replica
   * together with the owner record; it is complete only if that replica has
   * the owner record at `token` (every write before the claim is then there,
   * and later ones are this activation's own). A lagging replica → retry;
   * a newer owner → FencedError.
   */
  async loadWithValues(names: ClassNames, encId: string, token: number): Promise<LoadedObject> {
    try {
      return await this.loadLast(names, encId, token);
    } catch (err) {
      // multi_last answers at most ~1024 subjects: page through bigger objects.
      if (/too many results/i.test(describeError(err))) return this.loadPaged(names, encId, token);
      throw err;
    }
  }

  private async loadLast(names: ClassNames, encId: string, token: number): Promise<LoadedObject> {
    const jsm = await this.jsm();
    const owner = names.owner(encId);
    for (let attempt = 0; ; attempt++) {
      const entries = new Map<string, Entry>();
      let ownerSeq = 0;
      try {
        const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [names.kvAll(encId), owner] });
        for await (const m of it) {
          if (m.subject === owner) {
            ownerSeq = m.seq;
            continue;
          }
          const k = m.header.get('Castellan-Key');
          if (k === '' || m.header.get('Castellan-Op') === 'del') continue;
          entries.set(Buffer.from(k, 'base64url').toString('utf8'), { value: m.data, version: m.seq });
        }
      } catch (err) {
        if (!/no messages|not found|404/i.test(describeError(err))) throw err;
      }
      if (ownerSeq === token) return { entries };
      if (ownerSeq > token) throw new FencedError(`ownership moved (owner record at ${ownerSeq}, activation at ${token})`);
      if (attempt >= 20) throw new RejectedError(`no replica caught up with the owner record at ${token} (saw ${ownerSeq})`);
      await new Promise((r) => setTimeout(r, 25 * (attempt + 1)));
    }
  }

  /**
   * Loads a big object page by page in stream order (direct batch gets, any
   * replica; later versions of a key win), then reads the tail after the last
   * message seen from the stream leader, which is never behind: whatever a
   * lagging replica left out of the last page is there.
   */
  private async loadPaged(names: ClassNames, encId: string, token: number): Promise<LoadedObject> {
    const jsm = await this.jsm();
    const filter = names.kvAll(encId);
    const latest = new Map<string, { seq: number; data: Uint8Array; del: boolean }>();
    const take = (subject: string, seq: number, key: string, data: Uint8Array, del: boolean) => {
      const prev = latest.get(subject);
      if (prev === undefined || prev.seq < seq) latest.set(subject, { seq, data, del });
      keys.set(subject, key);
    };
    const keys = new Map<string, string>();
    let from = 1;
    for (;;) {
      let n = 0;
      const it = await jsm.direct.getBatch(names.stream, { seq: from, next_by_subj: filter, batch: 1000 });
      try {
        for await (const m of it) {
          n++;
          from = Math.max(from, m.seq + 1);
          take(m.subject, m.seq, m.header.get('Castellan-Key'), m.data, m.header.get('Castellan-Op') === 'del');
        }
      } catch (err) {
        if (!/no messages|not found|404/i.test(describeError(err))) throw err;
      }
      if (n < 1000) break;
    }
    for (;;) {
      // STREAM.MSG.GET takes next_by_subj (leader read); the client's type only lists seq / last_by_subj.
      const m = await jsm.streams.getMessage(names.stream, { seq: from, next_by_subj: filter } as unknown as MsgRequest);
      if (m === null) break;
      if (!m.subject.startsWith(filter.slice(0, -1))) throw new Error(`unexpected message ${m.subject} while loading ${filter}`);
      from = m.seq + 1;
      take(m.subject, m.seq, m.header?.get('Castellan-Key') ?? '', m.data, m.header?.get('Castellan-Op') === 'del');
    }
    const ownerRec = await jsm.streams.getMessage(names.stream, { last_by_subj: names.owner(encId) });
    const ownerSeq = ownerRec?.seq ?? 0;
    if (ownerSeq !== token) throw new FencedError(`ownership moved (owner record at ${ownerSeq}, activation at ${token})`);
    const entries = new Map<string, Entry>();
    for (const [subject, v] of latest) {
      const k = keys.get(subject) ?? '';
      if (k === '' || v.del) continue;
      entries.set(Buffer.from(k, 'base64url').toString('utf8'), { value: v.data, version: v.seq });
    }
    return { entries };
  }

  /**
   * The index of an object at activation: its live keys with versions and
   * value sizes, never all its values. Complete only when the replica that
   * answered holds the owner record at `token` (every write before the claim
   * is then there, and later ones are this activation's own, which wait for
   * the index): a lagging replica → retry; a newer owner → FencedError.
   *
   * A small object (values under SMALL_OBJECT_BYTES, ≤ ~1000 keys) comes in
   * one direct multi-last get with its values (kept in the value cache); a
   * bigger one is read keys-only (loadKeysOnly).
   */
  async loadIndex(names: ClassNames, encId: string, token: number): Promise<LoadedIndex> {
    const jsm = await this.jsm();
    const owner = names.owner(encId);
    for (let attempt = 0; ; attempt++) {
      const out: LoadedIndex = { keys: [], versions: [], sizes: [], values: new Map(), tombstones: new Map() };
      let ownerSeq = 0;
      let pending = 0;
      try {
        const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [names.kvAll(encId), owner], max_bytes: SMALL_OBJECT_BYTES });
        for await (const m of it) {
          pending = Number(m.header.get('Nats-Num-Pending') || '0');
          if (m.subject === owner) {
            ownerSeq = m.seq;
            continue;
          }
          const k = m.header.get('Castellan-Key');
          if (k === '') continue;
          const key = Buffer.from(k, 'base64url').toString('utf8');
          if (m.header.get('Castellan-Op') === 'del') {
            out.tombstones.set(key, m.seq);
            continue;
          }
          out.keys.push(key);
          out.versions.push(m.seq);
          out.sizes.push(m.data.length);
          out.values.set(key, { value: m.data, version: m.seq });
        }
      } catch (err) {
        if (/too many results/i.test(describeError(err))) return this.loadKeysOnly(names, encId, token);
        if (!notFound(err)) throw err;
      }
      // More than one answer holds: not a small object.
      if (pending > 0) return this.loadKeysOnly(names, encId, token);
      if (ownerSeq === token) return out;
      if (ownerSeq > token) throw new FencedError(`ownership moved (owner record at ${ownerSeq}, activation at ${token})`);
      if (attempt >= 20) throw new RejectedError(`no replica caught up with the owner record at ${token} (saw ${ownerSeq})`);
      await new Promise((r) => setTimeout(r, 25 * (attempt + 1)));
    }
  }

  /**
   * Keys, versions and value sizes of every live key, without values: an
   * ephemeral consumer over the object's key subjects and its owner record,
   * headers only (`Nats-Msg-Size` is the value size), last message per
   * subject, pulled in batches into plain arrays (no per-message work beyond
   * decoding the key, so the event loop is held only while a socket read is
   * parsed). Complete when the consumer's replica has the owner record at
   * `token` (as loadIndex); else retried with a new consumer.
   */
  private async loadKeysOnly(names: ClassNames, encId: string, token: number): Promise<LoadedIndex> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.readKeys(names, encId);
      if (r.ownerSeq === token) return r.keys;
      if (r.ownerSeq > token) throw new FencedError(`ownership moved (owner record at ${r.ownerSeq}, activation at ${token})`);
      if (attempt >= 10) throw new RejectedError(`no replica caught up with the owner record at ${token} (saw ${r.ownerSeq})`);
      await new Promise((res) => setTimeout(res, 50 * (attempt + 1)));
    }
  }

  private async readKeys(names: ClassNames, encId: string): Promise<{ keys: LoadedIndex; ownerSeq: number }> {
    const jsm = await this.jsm();
    const owner = names.owner(encId);
    const ci = await jsm.consumers.add(names.stream, {
      filter_subjects: [names.kvAll(encId), owner],
      deliver_policy: DeliverPolicy.LastPerSubject,
      headers_only: true,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      // Removed by the server soon after this read, even if the delete below fails.
      inactive_threshold: nanos(30_000),
    });
    const keys: LoadedIndex = { keys: [], versions: [], sizes: [], values: new Map(), tombstones: new Map() };
    let ownerSeq = 0;
    try {
      const expected = ci.num_pending;
      if (expected === 0) return { keys, ownerSeq };
      const inbox = createInbox();
      const next = `$JS.API.CONSUMER.MSG.NEXT.${names.stream}.${ci.name}`;
      await new Promise<void>((resolve, reject) => {
        let received = 0;
        let requested = 0;
        let noResponders = 0;
        let retry: NodeJS.Timeout | undefined;
        const pull = () => {
          retry = undefined;
          requested += PULL_BATCH;
          this.nc.publish(next, JSON.stringify({ batch: PULL_BATCH, expires: nanos(this.timeoutMs) }), { reply: inbox });
        };
        const finish = (err?: Error) => {
          clearInterval(watchdog);
          clearTimeout(retry);
          sub.unsubscribe();
          if (err === undefined) resolve();
          else reject(err);
        };
        // No progress for the request timeout: give up (nothing is kept of a partial read). One watchdog for
        // the whole read, not a timer per message (100,000 keys would arm and clear 100,000 timers).
        let progress = performance.now();
        const watchdog = setInterval(() => {
          if (performance.now() - progress > this.timeoutMs) finish(new RejectedError(`loading the keys of ${encId} stalled after ${received} of ${expected}`));
        }, Math.max(50, this.timeoutMs / 4));
        const sub = this.nc.subscribe(inbox, {
          callback: (err, m) => {
            if (err !== null) return finish(err);
            if (m.reply === undefined || m.reply === '') {
              // A status (408: a pull expired). More is owed only if the consumer still has messages.
              const code = m.headers?.code ?? 0;
              if (code === 408 || code === 404) {
                if (received >= expected) finish();
                else pull();
                return;
              }
              if (code === 503 && noResponders < MAX_PULL_NO_RESPONDERS) {
                // "No responders": the consumer was created a moment ago and the server that holds it does not
                // take pulls yet (seen in clustered JetStream). That pull was never accepted: ask again shortly.
                noResponders++;
                requested -= PULL_BATCH;
                retry ??= setTimeout(pull, 20 * noResponders);
                return;
              }
              return finish(new RejectedError(`loading the keys of ${encId}: status ${code} ${m.headers?.description ?? ''}`));
            }
            const t = m.reply.split('.');
            if (t.length === 9) t.splice(2, 0, '_', '');
            const seq = Number(t[7]);
            const left = Number(t[10]);
            received++;
            const k = m.headers?.get('Castellan-Key') ?? '';
            if (m.subject === owner) ownerSeq = seq;
            else if (k !== '' && m.headers?.get('Castellan-Op') === 'del') keys.tombstones.set(Buffer.from(k, 'base64url').toString('utf8'), seq);
            else if (k !== '') {
              keys.keys.push(Buffer.from(k, 'base64url').toString('utf8'));
              keys.versions.push(seq);
              keys.sizes.push(Number(m.headers?.get('Nats-Msg-Size') ?? '0'));
            }
            if (left === 0) return finish();
            progress = performance.now();
            // Keep one pull ahead of the one being delivered.
            if (received % PULL_BATCH === 0 && requested < expected + PULL_BATCH) pull();
          },
        });
        pull();
        if (expected > PULL_BATCH) pull();
      });
    } finally {
      jsm.consumers.delete(names.stream, ci.name).catch((err: unknown) => log.debug('deleting a key-load consumer failed (its inactive threshold removes it)', { error: describeError(err) }));
    }
    return { keys, ownerSeq };
  }

  /**
   * The value of `key` at exactly `version` (a stream sequence the index
   * names): from any replica, else from the stream leader. StaleVersionError
   * when the stream has no such message for that key (the key was written
   * since: the index that named it is not current).
   */
  async valueAt(names: ClassNames, encId: string, key: string, version: number): Promise<Uint8Array> {
    const jsm = await this.jsm();
    const subject = names.kv(encId, keyToken(key));
    try {
      const m = await jsm.direct.getMessage(names.stream, { seq: version });
      if (m !== null && m.subject === subject && m.seq === version) return m.data;
    } catch (err) {
      if (!notFound(err)) throw err;
    }
    // A lagging replica may not have it yet: the leader has every acknowledged write.
    let m;
    try {
      m = await jsm.streams.getMessage(names.stream, { seq: version });
    } catch (err) {
      if (!notFound(err)) throw err;
      m = null;
    }
    if (m === null || m.subject !== subject || m.seq !== version) throw new StaleVersionError(`key version ${version} is no longer in the stream`);
    return m.data;
  }

  /**
   * The values of listed keys at exactly their versions: direct multi-last
   * gets of their subjects (VALUES_PER_GET subjects, BYTES_PER_GET value
   * bytes each, one at a time), any replica; a key whose answer is not at its
   * version is read by valueAt (leader fallback, StaleVersionError).
   */
  async valuesAt(names: ClassNames, encId: string, wanted: readonly { key: string; version: number; size: number }[]): Promise<Map<string, Uint8Array>> {
    const jsm = await this.jsm();
    const out = new Map<string, Uint8Array>();
    let i = 0;
    while (i < wanted.length) {
      const chunk: { key: string; version: number; size: number }[] = [];
      let bytes = 0;
      while (i < wanted.length && chunk.length < VALUES_PER_GET && (chunk.length === 0 || bytes + wanted[i]!.size <= BYTES_PER_GET)) {
        bytes += wanted[i]!.size;
        chunk.push(wanted[i++]!);
      }
      const bySubject = new Map(chunk.map((w) => [names.kv(encId, keyToken(w.key)), w] as const));
      try {
        const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [...bySubject.keys()] });
        for await (const m of it) {
          const w = bySubject.get(m.subject);
          if (w !== undefined && m.seq === w.version) out.set(w.key, m.data);
        }
      } catch (err) {
        if (!notFound(err)) throw err;
      }
      for (const w of chunk) if (!out.has(w.key)) out.set(w.key, await this.valueAt(names, encId, w.key, w.version));
    }
    return out;
  }

  /**
   * The current value of one key while the activation's index is not loaded
   * yet: one direct multi-last get of the key's subject and the owner record,
   * accepted when that replica has the owner record at `token` (as loadIndex;
   * no write of this activation lands before its index is loaded, so that
   * replica has the key's last write). undefined = absent.
   */
  async currentValue(names: ClassNames, encId: string, token: number, key: string): Promise<Entry | undefined> {
    const jsm = await this.jsm();
    const owner = names.owner(encId);
    const subject = names.kv(encId, keyToken(key));
    for (let attempt = 0; ; attempt++) {
      let ownerSeq = 0;
      let found: Entry | undefined;
      try {
        const it = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: [subject, owner] });
        for await (const m of it) {
          if (m.subject === owner) ownerSeq = m.seq;
          else if (m.subject === subject && m.header.get('Castellan-Op') !== 'del') found = { value: m.data, version: m.seq };
        }
      } catch (err) {
        if (!notFound(err)) throw err;
      }
      if (ownerSeq === token) return found;
      if (ownerSeq > token) throw new FencedError(`ownership moved (owner record at ${ownerSeq}, activation at ${token})`);
      if (attempt >= 20) throw new RejectedError(`no replica caught up with the owner record at ${token} (saw ${ownerSeq})`);
      await new Promise((r) => setTimeout(r, 25 * (attempt + 1)));
    }
  }

  /** Sequence of the object's owner record, read from the stream leader (0 = none). */
  async ownerSeq(names: ClassNames, encId: string): Promise<number> {
    const m = await this.last(names.stream, names.owner(encId));
    return m?.seq ?? 0;
  }

  /** The last message of a subject, from the stream leader. */
  async last(stream: string, subject: string): Promise<{ seq: number; data: Uint8Array; headers: Map<string, string> } | undefined> {
    const jsm = await this.jsm();
    const m = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    if (m === null) return undefined;
    const headers = new Map<string, string>();
    if (m.header !== undefined) for (const k of m.header.keys()) headers.set(k, m.header.get(k));
    return { seq: m.seq, data: m.data, headers };
  }
}
