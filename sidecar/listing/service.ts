/**
 * Listing, inspecting and deleting the objects of a class (SPEC §2.6), from
 * any sidecar (adapter over JetStream and the router).
 *
 * - list: a page from the class's index view (view.ts), then one direct
 *   multi-subject read of the page's owner records and alarms (host and
 *   alarm are live facts, not copied into the index). An entry with no keys
 *   and no pending alarm (its alarm fired, or its keys were deleted one by
 *   one) is not an object any more: it is skipped and removed from the index
 *   by compare-and-set on its sequence after a leader read confirms it, so a
 *   concurrent write of its owner always wins.
 * - A pending entry (layout.ts: an object being written continuously, or
 *   whose owner died while it was) is resolved with one leader read of the
 *   object's newest key message, so listings stay exact.
 * - get: leader reads of the object's index entry, owner record and alarm.
 * - delete: forwarded through the router to the object's owner, which runs it
 *   as a turn of the object (host.ts) with fenced writes (owner.ts).
 * - keys: read-only inspection of an object's storage straight from the
 *   stream, consistent with the owner record as of the read.
 */
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { CastellanError, Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sessionStatus, type OwnerRecord } from '../objects/lease.ts';
import type { Membership } from '../objects/membership.ts';
import type { ObjectStore } from '../objects/ownership-store.ts';
import type { Router } from '../objects/router.ts';
import { encodeId, isValidClassName, MAX_ID_CHARS } from '../objects/subjects.ts';
import { isCasConflict, isNoMessage, undefinedIfNoMessage } from '../nats-errors.ts';
import type { Journal } from '../storage/journal.ts';
import { compareKeys } from '../storage/keys.ts';
import { ALARM_HEADER } from '../storage/storage.ts';
import { decodeSummary, decodeTotals, indexNames, OP_HEADER, resolveSummary, TOMBSTONE_TTL, TOTALS_HEADER, type Summary } from './layout.ts';
import type { ListingMetrics } from './metrics.ts';
import { encodeCursor, type PageQuery } from './query.ts';
import { fromByteKey, toByteKey } from './sorted-map.ts';
import { readObjectKeys } from './inspect.ts';
import { IndexView } from './view.ts';

/** The path the owner's sidecar answers itself (host.ts): delete the object's storage and alarm. */
export const DELETE_PATH = '/.castellan/sidecar/delete-object';
/** How long a delete keeps retrying across ownership changes. */
const DELETE_RETRY_MS = 15_000;

/** The SPEC error an owner answered with, if its body is one. */
function answerError(status: number, body: Uint8Array): CastellanError | undefined {
  try {
    const e = (JSON.parse(Buffer.from(body).toString('utf8')) as { error?: { code?: unknown; message?: unknown; retryable?: unknown } }).error;
    if (e === undefined || typeof e.code !== 'string') return undefined;
    return new CastellanError(status, e.code, typeof e.message === 'string' ? e.message : e.code, { retryable: e.retryable === true });
  } catch {
    return undefined;
  }
}

export interface ListedObject {
  id: string;
  keys: number;
  bytes: number;
  alarm: number | null;
  host: string | null;
  lastWrite: string | null;
}

export interface KeyEntry {
  key: string;
  value: string;
  version: number;
}

export interface ListingOptions {
  /** A view not used for this long is dropped (ms). */
  viewIdleMs: number;
  /** How long a listing waits for a view to load / catch up (ms). */
  syncTimeoutMs: number;
}

/** Ids are up to 256 characters of up to 4 UTF-8 bytes. */
export const MAX_ID_BYTES = MAX_ID_CHARS * 4;
/** Subjects per direct multi-last read (the server answers at most 1024 messages). */
const LOOKUP_IDS = 500;

export class Listing {
  private readonly nc: NatsConnection;
  private readonly store: ObjectStore;
  private readonly membership: Membership;
  private readonly router: Router;
  private readonly journal: Journal;
  private readonly metrics: ListingMetrics;
  private readonly opts: ListingOptions;
  private readonly log: Logger;
  private readonly views = new Map<string, IndexView>();
  private jsmP: Promise<JetStreamManager> | undefined;
  private readonly sweeper: NodeJS.Timeout;

  constructor(nc: NatsConnection, store: ObjectStore, membership: Membership, router: Router, journal: Journal, metrics: ListingMetrics, opts: ListingOptions, log: Logger) {
    this.nc = nc;
    this.store = store;
    this.membership = membership;
    this.router = router;
    this.journal = journal;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
    this.sweeper = setInterval(() => this.sweep(), Math.max(1_000, Math.min(60_000, opts.viewIdleMs / 4)));
    this.sweeper.unref();
  }

  private jsm(): Promise<JetStreamManager> {
    this.jsmP ??= jetstreamManager(this.nc, { timeout: 10_000, checkAPI: false }).catch((err: unknown) => {
      this.jsmP = undefined;
      throw err;
    });
    return this.jsmP;
  }

  private async checkClass(cls: string): Promise<void> {
    if (!isValidClassName(cls)) throw Errors.classNotFound(cls);
    let exists: boolean;
    try {
      exists = await this.store.classExists(cls);
    } catch (err) {
      throw Errors.unavailable(`Cannot look up class "${cls}": ${describeError(err)}`, 'UNAVAILABLE', err);
    }
    if (!exists) throw Errors.classNotFound(cls);
  }

  private view(cls: string): IndexView {
    let v = this.views.get(cls);
    if (v === undefined) {
      v = new IndexView(this.nc, cls, this.store.names(cls), this.log.child({ component: 'listing.view', cls }));
      this.views.set(cls, v);
      const created = v;
      created.start().catch(() => {
        if (this.views.get(cls) === created) this.views.delete(cls);
      });
    }
    return v;
  }

  private sweep(): void {
    const now = performance.now();
    for (const [cls, v] of this.views) {
      if (now - v.lastUsed < this.opts.viewIdleMs) {
        this.metrics.objects.set({ class: cls }, v.objects);
        this.metrics.bytes.set({ class: cls }, v.bytes);
        continue;
      }
      v.stop();
      this.views.delete(cls);
      this.metrics.objects.remove({ class: cls });
      this.metrics.bytes.remove({ class: cls });
      this.log.info('dropped an idle object index view', { cls });
    }
  }

  stop(): void {
    clearInterval(this.sweeper);
    for (const v of this.views.values()) v.stop();
    this.views.clear();
  }

  /** One page of the class's objects in id byte order. */
  async list(cls: string, q: PageQuery): Promise<{ objects: ListedObject[]; next: string | null }> {
    await this.checkClass(cls);
    const started = performance.now();
    const v = this.view(cls);
    try {
      await v.sync(this.opts.syncTimeoutMs);
    } catch (err) {
      if (err instanceof CastellanError) throw err;
      this.views.delete(cls);
      v.stop();
      throw Errors.unavailable(`Reading the object index of class "${cls}" failed: ${describeError(err)}`, 'UNAVAILABLE', err);
    }
    const prefix = toByteKey(q.prefix);
    // Where the walk resumes: the view changes while a batch is looked up, so every batch seeks afresh.
    let bound: { after?: string; from?: string } = q.after !== undefined && toByteKey(q.after) >= prefix ? { after: toByteKey(q.after) } : { from: prefix };
    const objects: ListedObject[] = [];
    const empties: { encId: string; seq: number }[] = [];
    let more = false;
    let done = false;
    while (!done && objects.length < q.limit) {
      // Take a batch of candidates, look their owners and alarms up in one read, keep the live ones.
      const batch: { id: string; encId: string; e: Summary & { seq: number } }[] = [];
      const it = v.map.entriesFrom(bound);
      while (batch.length < Math.min(LOOKUP_IDS, q.limit - objects.length + 8)) {
        const n = it.next();
        if (n.done === true || !n.value[0].startsWith(prefix)) {
          done = true;
          break;
        }
        const id = fromByteKey(n.value[0]);
        batch.push({ id, encId: encodeId(id), e: n.value[1] });
        bound = { after: n.value[0] };
      }
      const [live] = await Promise.all([this.lookup(cls, batch.map((b) => b.encId)), this.resolvePending(cls, batch)]);
      for (let i = 0; i < batch.length; i++) {
        const b = batch[i]!;
        const l = live.get(b.encId) ?? { alarm: null, host: null };
        if (b.e.keys === 0 && l.alarm === null) {
          empties.push({ encId: b.encId, seq: b.e.seq });
          continue;
        }
        if (objects.length === q.limit) {
          more = true;
          done = true;
          break;
        }
        objects.push({ id: b.id, keys: b.e.keys, bytes: b.e.bytes, alarm: l.alarm, host: l.host, lastWrite: new Date(b.e.lastWrite).toISOString() });
      }
    }
    if (!more && objects.length === q.limit && !done) more = true;
    if (empties.length > 0) void this.collect(cls, empties);
    this.metrics.pageLatency.observe({ class: cls }, (performance.now() - started) / 1000);
    return { objects, next: more ? encodeCursor(objects[objects.length - 1]!.id) : null };
  }

  /** Replaces each pending entry's summary by what it resolves to (resolveSummary; leader reads, in parallel). */
  private async resolvePending(cls: string, batch: { encId: string; e: Summary & { seq: number } }[]): Promise<void> {
    const pending = batch.filter((b) => b.e.pending === true);
    if (pending.length === 0) return;
    const names = this.store.names(cls);
    const idx = indexNames(names);
    await Promise.all(
      pending.map(async (b) => {
        const newest = await this.newestTotals(names.stream, names.kvAll(b.encId), cls, b.encId);
        let entry: Summary & { seq: number } = b.e;
        if (newest !== undefined && newest.seq > entry.seq && newest.totals === undefined) {
          // A batch with its own summary landed after the view's copy: the entry, read now, is at least that batch's.
          const m = await this.journal.last(names.stream, idx.subject(b.encId)).catch(undefinedIfNoMessage);
          const again = m === undefined ? undefined : decodeSummary(m.data, m.headers.get(OP_HEADER));
          entry = again === undefined ? { keys: 0, bytes: 0, lastWrite: entry.lastWrite, seq: m?.seq ?? entry.seq } : { ...again, seq: m!.seq };
        }
        b.e = { ...resolveSummary(entry, entry.seq, newest), seq: entry.seq };
      }),
    );
  }

  /** The object's newest key message: its sequence and the totals it carries (leader read). */
  private async newestTotals(stream: string, kvAll: string, cls: string, encId: string): Promise<{ seq: number; totals: Summary | undefined } | undefined> {
    try {
      const m = await this.journal.last(stream, kvAll);
      return m === undefined ? undefined : { seq: m.seq, totals: decodeTotals(m.headers.get(TOTALS_HEADER)) };
    } catch (err) {
      if (isNoMessage(err)) return undefined;
      throw Errors.unavailable(`Reading the newest write of ${cls}/${Buffer.from(encId, 'base64url').toString('utf8')} failed: ${describeError(err)}`, 'UNAVAILABLE', err);
    }
  }

  /** Owner host (if live) and pending alarm of each object, from one direct read per LOOKUP_IDS objects. */
  private async lookup(cls: string, encIds: readonly string[]): Promise<Map<string, { alarm: number | null; host: string | null }>> {
    const out = new Map<string, { alarm: number | null; host: string | null }>();
    if (encIds.length === 0) return out;
    const names = this.store.names(cls);
    const view = this.membership.view(cls);
    await view.whenReady();
    const jsm = await this.jsm();
    const ownerPrefix = names.ownerPrefix;
    const alarmPrefix = names.alarm('');
    for (let i = 0; i < encIds.length; i += LOOKUP_IDS) {
      const chunk = encIds.slice(i, i + LOOKUP_IDS);
      for (const e of chunk) out.set(e, { alarm: null, host: null });
      const filters = chunk.flatMap((e) => [names.owner(e), names.alarm(e)]);
      try {
        const iter = await jsm.direct.getLastMessagesFor(names.stream, { multi_last: filters });
        for await (const m of iter) {
          if (m.subject.startsWith(ownerPrefix)) {
            const rec = parseJson<OwnerRecord>(m.data);
            const encId = m.subject.slice(ownerPrefix.length);
            if (rec?.state === 'owned' && sessionStatus(view.host(rec.pod), rec.sessionId, performance.now(), view.timing) === 'live') out.get(encId)!.host = rec.pod;
          } else if (m.subject.startsWith(alarmPrefix)) {
            const due = alarmDue(m.data, (h) => m.header.get(h), (h) => m.header.has(h));
            if (due !== null) out.get(m.subject.slice(alarmPrefix.length))!.alarm = due;
          }
        }
      } catch (err) {
        if (!/no messages|not found|404/i.test(describeError(err))) {
          throw Errors.unavailable(`Reading owners and alarms of class "${cls}" failed: ${describeError(err)}`, 'UNAVAILABLE', err);
        }
      }
    }
    return out;
  }

  /**
   * Removes index entries of objects left with nothing: after a leader read
   * confirms no alarm is pending, a tombstone by compare-and-set on the
   * entry's sequence (any write of the owner since then makes it fail).
   */
  private async collect(cls: string, empties: readonly { encId: string; seq: number }[]): Promise<void> {
    const names = this.store.names(cls);
    const idx = indexNames(names);
    const js = jetstream(this.nc, { timeout: 5_000 });
    for (const e of empties.slice(0, 100)) {
      try {
        const a = await this.journal.last(names.stream, names.alarm(e.encId)).catch(undefinedIfNoMessage);
        if (a !== undefined && alarmDue(a.data, (h) => a.headers.get(h) ?? '', (h) => a.headers.has(h)) !== null) continue;
        const h = natsHeaders();
        h.set(OP_HEADER, 'del');
        h.set('Nats-TTL', TOMBSTONE_TTL);
        await js.publish(idx.subject(e.encId), new Uint8Array(0), { headers: h, expect: { lastSubjectSequence: e.seq } });
        this.metrics.collected.inc({ class: cls });
      } catch (err) {
        if (!isCasConflict(err)) this.log.debug('removing an empty index entry failed (harmless)', { cls, error: describeError(err) });
      }
    }
  }

  /** One object's summary (leader reads); 404 OBJECT_NOT_FOUND when it has neither storage nor alarm. */
  async get(cls: string, id: string): Promise<ListedObject> {
    await this.checkClass(cls);
    const names = this.store.names(cls);
    const encId = encodeId(id);
    const view = this.membership.view(cls);
    const [[newest, entry], owner, alarm] = await Promise.all([
      // The newest key message first, then the entry: a key message newer than a pending entry then carries its totals (layout.ts).
      (async () => {
        const n = await this.newestTotals(names.stream, names.kvAll(encId), cls, encId);
        return [n, await this.journal.last(names.stream, indexNames(names).subject(encId)).catch(undefinedIfNoMessage)] as const;
      })(),
      this.journal.last(names.stream, names.owner(encId)).catch(undefinedIfNoMessage),
      this.journal.last(names.stream, names.alarm(encId)).catch(undefinedIfNoMessage),
      view.whenReady(),
    ]);
    const raw = entry === undefined ? undefined : decodeSummary(entry.data, entry.headers.get(OP_HEADER));
    const s = raw === undefined ? undefined : resolveSummary(raw, entry!.seq, newest);
    const due = alarm === undefined ? null : alarmDue(alarm.data, (h) => alarm.headers.get(h) ?? '', (h) => alarm.headers.has(h));
    if ((s === undefined || s.keys === 0) && due === null) throw Errors.notFound(`Object ${cls}/${id} has neither storage nor an alarm.`, 'OBJECT_NOT_FOUND');
    const rec = owner === undefined ? undefined : parseJson<OwnerRecord>(owner.data);
    const host = rec?.state === 'owned' && sessionStatus(view.host(rec.pod), rec.sessionId, performance.now(), view.timing) === 'live' ? rec.pod : null;
    return { id, keys: s?.keys ?? 0, bytes: s?.bytes ?? 0, alarm: due, host, lastWrite: s === undefined ? null : new Date(s.lastWrite).toISOString() };
  }

  /**
   * Deletes the object's storage and alarm through its owner (fenced like any
   * write). The delete is idempotent, so when ownership moves during it (the
   * owner was fenced: 409 NOT_OWNER, or another retryable answer) it runs
   * again at the new owner, for up to DELETE_RETRY_MS; the caller never sees
   * a move it did not cause.
   */
  async delete(cls: string, id: string): Promise<void> {
    await this.checkClass(cls);
    const deadline = performance.now() + DELETE_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      let problem: CastellanError;
      try {
        const r = await this.router.invoke({ cls, id, method: 'POST', path: DELETE_PATH, query: '', headers: [], body: new Uint8Array(0), rid: randomUUID() });
        if (r.status === 204) return;
        problem = answerError(r.status, r.body) ?? Errors.internal(`The owner of ${cls}/${id} answered ${r.status} to the delete: ${Buffer.from(r.body).toString('utf8').slice(0, 300)}`);
      } catch (err) {
        if (!(err instanceof CastellanError)) throw err;
        problem = err;
      }
      if (!problem.retryable || performance.now() + 250 * attempt > deadline) throw problem;
      this.log.info('object delete met an ownership change; running it again at the owner', { cls, id, attempt, code: problem.code });
      await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * attempt)));
    }
  }

  /**
   * Read-only inspection of an object's keys and values, from the stream
   * (not the owner): consistent with the owner record as of the read.
   */
  async keys(cls: string, id: string, q: PageQuery): Promise<{ entries: KeyEntry[]; next: string | null }> {
    await this.checkClass(cls);
    let entries;
    try {
      entries = await readObjectKeys(await this.jsm(), this.journal, this.store.names(cls), encodeId(id));
    } catch (err) {
      throw Errors.unavailable(`Reading the storage of ${cls}/${id} failed: ${describeError(err)}`, 'UNAVAILABLE', err);
    }
    const sorted = [...entries.keys()].filter((k) => k.startsWith(q.prefix) && (q.after === undefined || compareKeys(k, q.after) > 0)).sort(compareKeys);
    const page = sorted.slice(0, q.limit);
    return {
      entries: page.map((key) => {
        const e = entries.get(key)!;
        return { key, value: Buffer.from(e.value).toString('base64'), version: e.version };
      }),
      next: sorted.length > q.limit ? encodeCursor(page[page.length - 1]!) : null,
    };
  }
}

function parseJson<T>(data: Uint8Array): T | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(data)) as T;
  } catch {
    return undefined;
  }
}

/** The due time of a pending alarm message (sidecar/storage/storage.ts writes them), or null. */
export function alarmDue(data: Uint8Array, get: (h: string) => string, has: (h: string) => boolean): number | null {
  if (get(ALARM_HEADER) !== 'set' || !has('Nats-Schedule')) return null;
  const rec = parseJson<{ dueMs?: unknown }>(data);
  return typeof rec?.dueMs === 'number' ? rec.dueMs : null;
}

