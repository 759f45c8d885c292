/**
 * One activation's storage: the key index loaded at activation and the write
 * pipeline that keeps it equal to what is durable in JetStream.
 *
 * Reads. The index (key-index.ts) holds keys, versions and value sizes, not
 * values. A get names the version the index has and takes the value from the
 * value cache (value-cache.ts, exact version only) or reads exactly that
 * version from the stream (journal.valueAt); a list does the same for its
 * page, bounded by MAX_LIST_VALUE_BYTES. A read that finds its version gone
 * while the index still names it proves the index not current: it is
 * distrusted (re-fence + reload, as after an unknown outcome) and the read
 * retried — a different value than the index names is never served. Before
 * the index is loaded (activation) a get is answered from a replica that
 * holds the owner record at this activation's token (journal.currentValue),
 * so the first read of a big object does not wait for its whole index;
 * lists and writes do.
 *
 * Writes queue per object and commit one batch at a time. While a batch is in
 * flight, newly arrived writes wait; the next batch takes all of them
 * (coalescing), planned in arrival order, each seeing the ones before it
 * (transaction.ts), so the result is the same as committing them one by one.
 * A write whose checks fail against the committed state is answered 409
 * CONFLICT at planning and takes no part in the batch. A write whose checks
 * name a key an earlier write of the pending batch touches is not decided
 * against that pending state: it waits for the batch's outcome and is planned
 * in the next batch (its answer is never definite before the write it depends
 * on is). A write with a value the NATS server cannot take fails alone (413).
 * A batch is all-or-nothing, so a failure fails every write in it; the index
 * changes only after the batch's acknowledgement.
 *
 * Failures: fenced (ownership moved) → this state is dead, every later call is
 * 409 NOT_OWNER; refused → 503, index unchanged; no acknowledgement → 503 "may
 * or may not have been applied", and the index is not trusted again (no read,
 * no check) until it is provably current: the activation re-fences (writes
 * its owner record again, `StateContext.refence`), which orders after the
 * unknown write in the stream — that write is now either in the stream before
 * the new record or can never land (its fence names the old record) — and the
 * index is reloaded at the new token from a replica that has the new record.
 */
import { CastellanError, Errors } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { describeError } from '../../common/logger.ts';
import type { ClassNames } from '../objects/subjects.ts';
import { CheckFailedError, checkMessage, deleteMessage, FencedError, IndeterminateError, type Journal, keyToken, type OutMessage, putMessage, StaleVersionError } from './journal.ts';
import { type Entry, KeyIndex } from './key-index.ts';
import { MAX_LIST_VALUE_BYTES, type ListRange } from './keys.ts';
import type { ValueCache } from './value-cache.ts';
import { decodeSummary, OP_HEADER } from '../listing/layout.ts';
import { entryAfter, entryFound, settleDue, SETTLE_QUIET_MS, type EntryState, type ObjectIndexHook, type SummaryPlan } from '../listing/summary.ts';
import { isNoMessage } from '../nats-errors.ts';
import type { StorageMetrics } from './metrics.ts';
import { evaluateChecks, presentIn, reduceOps, type Pending, type Write } from './transaction.ts';

/** Upper bounds of one coalesced batch (a single write may exceed them alone). */
const MAX_BATCH_MESSAGES = 256;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** Server limit of messages in one atomic batch (less some room). */
const MAX_ATOMIC_MESSAGES = 900;
/** Bytes of writes one object may have waiting (beyond → 429; a single write may exceed it alone). */
export const MAX_QUEUED_WRITE_BYTES = 64 * 1024 * 1024;
/** Tries of a read whose version vanished (the index changed under it, or was not current). */
const READ_ATTEMPTS = 3;
/**
 * Activation starts loading the index this long after the claim, unless a
 * list or write needs it sooner: the first request's gets are answered
 * without the index and should not queue behind a big object's key stream.
 */
export const PRELOAD_DELAY_MS = 250;

export interface WriteResult {
  /** Version of every key put. */
  versions: Map<string, number>;
  /** For every key deleted: whether it existed. */
  deleted: Map<string, boolean>;
}

type Item = (
  | { kind: 'write'; write: Write; resolve: (r: WriteResult) => void; reject: (e: unknown) => void; at: number }
  | { kind: 'deleteAll'; resolve: (r: { deleted: number }) => void; reject: (e: unknown) => void; at: number }
  | { kind: 'raw'; msg: OutMessage; resolve: (seq: number) => void; reject: (e: unknown) => void; at: number }
  /** The object index entry is pending: settle it (sidecar/listing/summary.ts). */
  | { kind: 'settle'; resolve: () => void; reject: (e: unknown) => void; at: number }
) & { /** Batches it took part in that JetStream refused on a key check (then re-planned). */ replans?: number; /** Value bytes it carries. */ bytes?: number };

function itemBytes(it: Item): number {
  if (it.kind === 'raw') return it.msg.data.length;
  if (it.kind === 'deleteAll' || it.kind === 'settle') return 0;
  return it.write.ops.reduce((n, o) => n + (o.op === 'put' ? o.value.length : 0), 0);
}

/** Re-plans of one write after JetStream refused a key check before it is answered 503. */
const MAX_REPLANS = 3;

export interface StateContext {
  cls: string;
  names: ClassNames;
  journal: Journal;
  metrics: StorageMetrics;
  log: Logger;
  /** Recently read or written values of this host's objects (bounded by bytes). */
  cache: ValueCache;
  /** Listing hook (sidecar/listing/summary.ts): what each batch does to the object's index entry. */
  index?: ObjectIndexHook;
  /**
   * Re-fences the activation at `token` (object host): resolves with its new
   * token, calling `adopt` with it first (synchronously with the host's own
   * switch), or 'moved' when the object is no longer this activation's.
   */
  refence?: (encId: string, token: number, adopt: (token: number) => void) => Promise<number | 'moved'>;
}

export class ObjectState {
  readonly encId: string;
  readonly id: string;
  private tokenNow: number;
  private readonly ctx: StateContext;
  private index: KeyIndex | undefined;
  private loading: Promise<KeyIndex> | undefined;
  private dead: CastellanError | undefined;
  /** A commit's outcome is unknown: nothing is served from memory until recovered. */
  private suspect = false;
  private recovering: Promise<void> | undefined;
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private running = false;
  /** The object's index entry as this activation last committed it (undefined: unknown). */
  private entry: EntryState | undefined;
  private lastCommitAt = 0;
  private settleTimer: NodeJS.Timeout | undefined;

  constructor(ctx: StateContext, encId: string, id: string, token: number) {
    this.ctx = ctx;
    this.encId = encId;
    this.id = id;
    this.tokenNow = token;
  }

  /** Fencing token of the activation (the owner record's sequence); changes when it re-fences. */
  get token(): number {
    return this.tokenNow;
  }

  get isDead(): boolean {
    return this.dead !== undefined;
  }

  /** Throws when this state is dead; re-synchronises first when it is suspect. */
  private async ready(): Promise<void> {
    if (this.dead !== undefined) throw this.dead;
    if (this.suspect) await this.recover();
    if (this.dead !== undefined) throw this.dead;
  }

  /** Activation: loads the index in the background after PRELOAD_DELAY_MS (a failure is logged, and answered to whoever needs the index). */
  preload(): void {
    setTimeout(() => {
      if (this.index === undefined && this.loading === undefined && this.dead === undefined) this.read().catch(() => undefined);
    }, PRELOAD_DELAY_MS).unref();
  }

  /** The activation ended: no more settling of its index entry (a pending entry stays exact for readers). */
  close(): void {
    clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
  }

  /**
   * Commits `msgs` with what the object index needs (the listing hook), and
   * keeps this activation's knowledge of the entry: updated on success,
   * forgotten on any failure (the next batch then carries a settled summary).
   */
  private async commitIndexed(idx: KeyIndex, msgs: readonly OutMessage[], settle: boolean): Promise<number[]> {
    const hook = this.ctx.index;
    if (hook === undefined) return this.ctx.journal.commit(this.ctx.names, this.encId, this.token, msgs);
    const now = Date.now();
    let prepared: { msgs: OutMessage[]; plan: SummaryPlan };
    try {
      // A settle names the last write this activation knows (its own, or the entry's it found), not the settle's time.
      prepared = hook.prepare(this.encId, this.entry, idx, msgs, settle ? { lastWrite: this.lastCommitAt > 0 ? this.lastCommitAt : now } : false, now);
    } catch (err) {
      this.entry = undefined;
      throw err;
    }
    if (prepared.msgs.length === 0) return [];
    const last = this.entry;
    this.entry = undefined;
    const seqs = await this.ctx.journal.commit(this.ctx.names, this.encId, this.token, prepared.msgs);
    this.entry = entryAfter(prepared.plan, last, now);
    if (msgs.length > 0) this.lastCommitAt = now;
    if (this.entry?.pending === true) this.armSettle();
    return seqs;
  }

  /**
   * After the index loaded, in the background: read the object's index entry
   * (leader read) and learn it, or, when it is missing (written before the
   * index existed), pending (its owner died) or wrong, settle it now.
   */
  private checkEntry(idx: KeyIndex): void {
    const hook = this.ctx.index;
    if (hook === undefined) return;
    void (async () => {
      let found;
      try {
        const m = await this.ctx.journal.last(this.ctx.names.stream, hook.entrySubject(this.encId));
        found = m === undefined ? undefined : decodeSummary(m.data, m.headers.get(OP_HEADER));
      } catch (err) {
        if (!isNoMessage(err)) throw err;
      }
      // Another load, a commit or a failure since: what they know wins.
      if (this.dead !== undefined || this.index !== idx || this.entry !== undefined) return;
      if (this.lastCommitAt === 0 && found !== undefined) this.lastCommitAt = found.lastWrite;
      const known = entryFound(found, { keys: idx.size, bytes: idx.totalBytes });
      if (known !== undefined) {
        this.entry = known;
        return;
      }
      this.ctx.log.debug('object index entry missing, pending or stale at activation; settling it', { id: this.id, found });
      this.settleEntry();
    })().catch((err: unknown) => this.ctx.log.debug('reading the object index entry at activation failed (the next write carries it)', { id: this.id, error: describeError(err) }));
  }

  /** Settles the object's index entry through the write queue (a failure leaves it to the next write). */
  private settleEntry(): void {
    this.enqueue({
      kind: 'settle',
      resolve: () => undefined,
      reject: (err) => this.ctx.log.debug('settling the object index entry failed (the next write carries it)', { id: this.id, error: describeError(err) }),
      at: performance.now(),
    });
  }

  /** While the entry is pending: settle it once writes pause (or after SETTLE_MAX_MS), through the write queue. */
  private armSettle(): void {
    if (this.settleTimer !== undefined) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      if (this.dead !== undefined || this.entry?.pending !== true) return;
      if (!settleDue(this.entry, this.lastCommitAt, Date.now())) {
        this.armSettle();
        return;
      }
      this.settleEntry();
    }, SETTLE_QUIET_MS);
    this.settleTimer.unref();
  }

  /** The index, loading it if needed (activation, or after an unacknowledged commit). */
  async read(): Promise<KeyIndex> {
    await this.ready();
    if (this.index !== undefined) return this.index;
    this.loading ??= (async () => {
      const started = performance.now();
      try {
        const loaded = await this.ctx.journal.loadIndex(this.ctx.names, this.encId, this.tokenNow);
        const idx = await KeyIndex.build(loaded, loaded.tombstones);
        for (const [k, e] of loaded.values) this.ctx.cache.put(this.encId, k, e.version, e.value);
        this.index = idx;
        if (idx.size > 0) this.checkEntry(idx);
        this.ctx.metrics.loads.inc({ class: this.ctx.cls, outcome: 'ok' });
        this.ctx.log.debug('storage loaded', { id: this.id, keys: idx.size, ms: Math.round(performance.now() - started) });
        return idx;
      } catch (err) {
        this.ctx.metrics.loads.inc({ class: this.ctx.cls, outcome: err instanceof FencedError ? 'fenced' : 'error' });
        throw this.failure(err, false);
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** The value of `key` at the version the index names (see the header); undefined = absent. */
  async get(key: string): Promise<Entry | undefined> {
    for (let attempt = 1; ; attempt++) {
      await this.ready();
      const idx = this.index;
      if (idx === undefined) {
        // Activation: the index loads in the background (preload); this read does not wait for it.
        const token = this.tokenNow;
        try {
          const e = await this.ctx.journal.currentValue(this.ctx.names, this.encId, token, key);
          if (e !== undefined) this.ctx.cache.put(this.encId, key, e.version, e.value);
          return e;
        } catch (err) {
          // Re-fenced meanwhile (a newer token is this activation's own): ask again.
          if (err instanceof FencedError && this.tokenNow !== token && attempt < READ_ATTEMPTS) continue;
          throw this.failure(err, false);
        }
      }
      const meta = idx.get(key);
      if (meta === undefined) return undefined;
      const hit = this.ctx.cache.get(this.encId, key, meta.version);
      if (hit !== undefined) return { value: hit, version: meta.version };
      try {
        const value = await this.ctx.journal.valueAt(this.ctx.names, this.encId, key, meta.version);
        this.ctx.cache.put(this.encId, key, meta.version, value);
        return { value, version: meta.version };
      } catch (err) {
        if (err instanceof StaleVersionError && attempt < READ_ATTEMPTS) {
          this.vanished(idx, [{ key, version: meta.version }], err);
          continue;
        }
        throw this.failure(err, false);
      }
    }
  }

  /**
   * A page of keys with their values, at the versions the index names; at
   * most MAX_LIST_VALUE_BYTES of values (then `truncated`).
   */
  async list(range: ListRange): Promise<{ entries: { key: string; entry: Entry }[]; truncated: boolean }> {
    for (let attempt = 1; ; attempt++) {
      const idx = await this.read();
      const page = idx.list(range, MAX_LIST_VALUE_BYTES);
      const values = new Map<string, Uint8Array>();
      const missing: typeof page.entries = [];
      for (const e of page.entries) {
        const hit = this.ctx.cache.get(this.encId, e.key, e.version);
        if (hit === undefined) missing.push(e);
        else values.set(e.key, hit);
      }
      try {
        if (missing.length > 0) {
          const got = await this.ctx.journal.valuesAt(this.ctx.names, this.encId, missing);
          for (const e of missing) {
            const v = got.get(e.key)!;
            values.set(e.key, v);
            this.ctx.cache.put(this.encId, e.key, e.version, v);
          }
        }
      } catch (err) {
        if (err instanceof StaleVersionError && attempt < READ_ATTEMPTS) {
          this.vanished(idx, missing, err);
          continue;
        }
        throw this.failure(err, false);
      }
      return { entries: page.entries.map((e) => ({ key: e.key, entry: { value: values.get(e.key)!, version: e.version } })), truncated: page.truncated };
    }
  }

  /**
   * A version a read asked for is gone from the stream. If the index (still
   * this one) names it yet, the index is not current: distrust it (re-fence
   * and reload before any read or check). Otherwise a write replaced it
   * meanwhile, and the read just asks again.
   */
  private vanished(idx: KeyIndex, asked: readonly { key: string; version: number }[], err: StaleVersionError): void {
    if (this.index !== idx || asked.some((a) => idx.get(a.key)?.version !== a.version)) return;
    this.suspect = true;
    this.index = undefined;
    this.ctx.metrics.loads.inc({ class: this.ctx.cls, outcome: 'stale_read' });
    this.ctx.log.warn('a value the index names is not in the stream; re-synchronising before serving it', { id: this.id, error: err.message });
  }

  /** After an unknown commit outcome: re-fence (a barrier after that write in the stream), then reload. */
  private recover(): Promise<void> {
    this.recovering ??= (async () => {
      try {
        const refence = this.ctx.refence;
        if (refence !== undefined) {
          const r = await refence(this.encId, this.tokenNow, (t) => {
            this.tokenNow = t;
          });
          if (r === 'moved') {
            this.dead = Errors.notOwner(`This sidecar no longer owns object ${this.ctx.cls}/${this.id}.`);
            return;
          }
          this.ctx.log.info('storage re-fenced after an unacknowledged commit; reloading', { id: this.id, token: r });
        }
        this.index = undefined;
        this.suspect = false;
        this.ctx.metrics.loads.inc({ class: this.ctx.cls, outcome: 'refenced' });
      } catch (err) {
        throw Errors.unavailable(
          `Storage of ${this.ctx.cls}/${this.id} is unavailable: an earlier write was not acknowledged and the object cannot be re-synchronised yet (${describeError(err)}).`,
          'STORAGE_UNAVAILABLE',
          err,
        );
      } finally {
        this.recovering = undefined;
      }
    })();
    return this.recovering;
  }

  write(write: Write): Promise<WriteResult> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'write', write, resolve, reject, at: performance.now() }));
  }

  deleteAll(): Promise<{ deleted: number }> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'deleteAll', resolve, reject, at: performance.now() }));
  }

  /** A fenced single message outside the key space (the alarm); resolves with its sequence. */
  raw(msg: OutMessage): Promise<number> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'raw', msg, resolve, reject, at: performance.now() }));
  }

  private enqueue(item: Item): void {
    if (this.dead !== undefined) {
      item.reject(this.dead);
      return;
    }
    item.bytes = itemBytes(item);
    if (this.queue.length > 0 && this.queuedBytes + item.bytes > MAX_QUEUED_WRITE_BYTES) {
      item.reject(Errors.overloaded(`Storage writes of ${this.ctx.cls}/${this.id} are queued beyond ${MAX_QUEUED_WRITE_BYTES} bytes; retry later.`));
      return;
    }
    this.queuedBytes += item.bytes;
    this.queue.push(item);
    if (!this.running) void this.pump();
  }

  /** Takes the head of the queue. */
  private take(): Item {
    const it = this.queue.shift()!;
    this.queuedBytes -= it.bytes ?? 0;
    return it;
  }

  private async pump(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        let idx: KeyIndex;
        try {
          idx = await this.read();
        } catch (err) {
          this.queuedBytes = 0;
          for (const it of this.queue.splice(0)) it.reject(err);
          return;
        }
        const head = this.queue[0]!;
        if (head.kind === 'deleteAll') {
          this.take();
          await this.runDeleteAll(idx, head);
        } else {
          await this.runBatch(idx);
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Plans as many queued writes as fit into one batch, commits, applies. */
  private async runBatch(idx: KeyIndex): Promise<void> {
    const lookup = (k: string) => idx.get(k);
    const pending: Pending = new Map();
    const msgs: OutMessage[] = [];
    const planned: { item: Item; first: number; count: number; deleted: Map<string, boolean>; keys: string[] }[] = [];
    const settles: Extract<Item, { kind: 'settle' }>[] = [];
    let bytes = 0;
    while (this.queue.length > 0) {
      const it = this.queue[0]!;
      if (it.kind === 'deleteAll') break;
      if (it.kind === 'settle') {
        this.take();
        settles.push(it);
        continue;
      }
      const size = it.kind === 'raw' ? 1 : it.write.ops.length + it.write.checks.length;
      const itBytes = it.bytes ?? itemBytes(it);
      // A check on a key this batch already writes waits for the batch's outcome (next batch).
      if (it.kind === 'write' && planned.length > 0 && it.write.checks.some((c) => pending.has(c.key))) break;
      if (planned.length > 0 && (msgs.length + size > MAX_BATCH_MESSAGES || bytes + itBytes > MAX_BATCH_BYTES)) break;
      this.take();
      if (it.kind === 'raw') {
        planned.push({ item: it, first: msgs.length, count: 1, deleted: new Map(), keys: [] });
        msgs.push(it.msg);
        bytes += itBytes;
        continue;
      }
      // A value the NATS server cannot take fails its own write only.
      const tooBig = it.write.ops.map((o) => (o.op === 'put' ? this.ctx.journal.tooLarge(putMessage(this.ctx.names, this.encId, o.key, o.value)) : undefined)).find((e) => e !== undefined);
      if (tooBig !== undefined) {
        it.reject(tooBig);
        continue;
      }
      const check = evaluateChecks(it.write.checks, lookup, pending);
      if (!check.ok) {
        this.ctx.metrics.ops.inc({ class: this.ctx.cls, kind: 'write', outcome: 'conflict' });
        it.reject(Errors.conflict(`Precondition failed: ${check.reason}.`));
        continue;
      }
      // State before this write (committed + earlier writes of this batch).
      const deleted = new Map<string, boolean>();
      for (const o of it.write.ops) if (o.op === 'delete' && !deleted.has(o.key)) deleted.set(o.key, presentIn(o.key, lookup, pending));
      const existedBefore = new Map(it.write.ops.map((o) => [o.key, presentIn(o.key, lookup, pending)] as const));
      // A delete of a key absent before and after needs no tombstone.
      const reduced = reduceOps(it.write.ops, pending).filter((o) => o.op === 'put' || existedBefore.get(o.key) === true);
      // Every check is enforced by JetStream too: one check message per key, ahead of the write's own
      // messages, in the same atomic batch, expecting the key's subject at the version checked
      // (`if-match: *` at the version the index has; absent: at its known tombstone, or 0).
      const checked = new Map<string, number>();
      for (const c of it.write.checks) {
        const v = 'version' in c ? c.version : 'exists' in c ? lookup(c.key)?.version : idx.absentAt(c.key);
        if (v !== undefined) checked.set(c.key, v);
      }
      for (const [key, v] of checked) msgs.push(checkMessage(this.ctx.names, this.encId, this.ctx.names.kv(this.encId, keyToken(key)), v));
      const first = msgs.length;
      for (const o of reduced) msgs.push(o.op === 'put' ? putMessage(this.ctx.names, this.encId, o.key, o.value) : deleteMessage(this.ctx.names, this.encId, o.key));
      planned.push({ item: it, first, count: reduced.length, deleted, keys: reduced.map((o) => o.key) });
      bytes += itBytes;
    }
    if (planned.length === 0 && settles.length === 0) return;
    let seqs: number[];
    const started = performance.now();
    try {
      // Listing hook: the index entry's summary or totals go with the batch (sidecar/listing/summary.ts).
      seqs = await this.commitIndexed(idx, msgs, settles.length > 0);
      this.ctx.metrics.commits.inc({ class: this.ctx.cls, outcome: 'ok' });
      if (msgs.length > 0) {
        this.ctx.metrics.commitLatency.observe({ class: this.ctx.cls }, (performance.now() - started) / 1000);
        this.ctx.metrics.batchWrites.observe({ class: this.ctx.cls }, planned.length);
      }
    } catch (err) {
      if (err instanceof CheckFailedError) {
        for (const s of settles) s.resolve();
        await this.checkFailed(err, planned.map((p) => p.item));
        return;
      }
      const e = this.failure(err, true);
      this.ctx.metrics.commits.inc({ class: this.ctx.cls, outcome: e.code });
      for (const p of planned) p.item.reject(e);
      for (const s of settles) s.reject(e);
      return;
    }
    for (const s of settles) s.resolve();
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i]!;
      if (m.headers['Castellan-Key'] === undefined) continue;
      const key = Buffer.from(m.headers['Castellan-Key'], 'base64url').toString('utf8');
      if (m.headers['Castellan-Op'] === 'del') {
        idx.delete(key, seqs[i]!);
        this.ctx.cache.drop(this.encId, key);
      } else {
        idx.set(key, { version: seqs[i]!, size: m.data.length });
        this.ctx.cache.put(this.encId, key, seqs[i]!, m.data);
      }
    }
    this.ctx.metrics.objectBytes.observe({ class: this.ctx.cls }, idx.totalBytes);
    for (const p of planned) {
      if (p.item.kind === 'raw') {
        p.item.resolve(seqs[p.first]!);
        continue;
      }
      if (p.item.kind !== 'write') continue;
      const versions = new Map<string, number>();
      for (let j = 0; j < p.count; j++) {
        const m = msgs[p.first + j]!;
        if (m.headers['Castellan-Op'] !== 'del') versions.set(p.keys[j]!, seqs[p.first + j]!);
      }
      this.ctx.metrics.ops.inc({ class: this.ctx.cls, kind: 'write', outcome: 'ok' });
      p.item.resolve({ versions, deleted: p.deleted });
    }
  }

  /**
   * JetStream refused a batch on a key check or on the fence; nothing was
   * written. Fence (the owner record moved) → dead, 409 NOT_OWNER. Key check
   * → the index was not current: re-synchronise it (re-fence + reload) and
   * plan the same writes again, first in the queue (their checks are then
   * decided against the current state). Unknown which → 503, not applied.
   */
  private async checkFailed(err: CheckFailedError, items: Item[]): Promise<void> {
    let ownerSeq: number | undefined;
    try {
      ownerSeq = await this.ctx.journal.ownerSeq(this.ctx.names, this.encId);
    } catch (readErr) {
      this.ctx.log.warn('reading the owner record after a refused batch failed', { id: this.id, error: describeError(readErr) });
    }
    if (ownerSeq !== undefined && ownerSeq !== this.tokenNow) {
      const e = this.failure(new FencedError(err.message), true);
      this.ctx.metrics.commits.inc({ class: this.ctx.cls, outcome: e.code });
      for (const it of items) it.reject(e);
      return;
    }
    this.suspect = true;
    this.index = undefined;
    this.ctx.metrics.commits.inc({ class: this.ctx.cls, outcome: 'CHECK_REFUSED' });
    this.ctx.log.warn('JetStream refused a key check the index passed; re-synchronising and planning again', { id: this.id, error: err.message });
    const notApplied = Errors.unavailable(`Storage write of ${this.ctx.cls}/${this.id} was not applied (its check could not be decided); retry.`, 'STORAGE_UNAVAILABLE', err);
    const again: Item[] = [];
    for (const it of items) {
      it.replans = (it.replans ?? 0) + 1;
      if (ownerSeq === undefined || it.replans > MAX_REPLANS) it.reject(notApplied);
      else again.push(it);
    }
    for (const it of again) this.queuedBytes += it.bytes ?? 0;
    this.queue.unshift(...again);
  }

  private async runDeleteAll(idx: KeyIndex, item: Extract<Item, { kind: 'deleteAll' }>): Promise<void> {
    const keys = [...idx.keys()];
    let deleted = 0;
    try {
      for (let i = 0; i < keys.length; i += MAX_ATOMIC_MESSAGES) {
        const chunk = keys.slice(i, i + MAX_ATOMIC_MESSAGES);
        const msgs = chunk.map((k) => deleteMessage(this.ctx.names, this.encId, k));
        // Listing hook: the index summary rides in the same atomic, fenced batch (sidecar/listing/summary.ts).
        const seqs = await this.commitIndexed(idx, msgs, false);
        idx.deleteMany(chunk, seqs.slice(0, chunk.length));
        for (const k of chunk) this.ctx.cache.drop(this.encId, k);
        deleted += chunk.length;
      }
      this.ctx.metrics.objectBytes.observe({ class: this.ctx.cls }, idx.totalBytes);
      item.resolve({ deleted });
    } catch (err) {
      item.reject(this.failure(err, true));
    }
  }

  /** Maps a journal failure to the HTTP error, updating this state. */
  private failure(err: unknown, writing: boolean): CastellanError {
    if (err instanceof CastellanError) return err;
    if (err instanceof FencedError) {
      this.dead = Errors.notOwner(`This sidecar no longer owns object ${this.ctx.cls}/${this.id}: ${err.message}.`);
      this.ctx.log.warn('storage fenced: ownership moved', { id: this.id, token: this.token });
      return this.dead;
    }
    if (err instanceof IndeterminateError) {
      this.index = undefined;
      this.suspect = true;
      this.ctx.log.warn('storage commit unacknowledged; re-fencing and reloading before the next call', { id: this.id, error: err.message });
      return Errors.unavailable(`Storage write of ${this.ctx.cls}/${this.id} was not acknowledged; it may or may not have been applied.`, 'STORAGE_UNAVAILABLE', err);
    }
    this.ctx.log.warn(writing ? 'storage commit failed' : 'storage load failed', { id: this.id, error: describeError(err) });
    return Errors.unavailable(`Storage of ${this.ctx.cls}/${this.id} is unavailable: ${describeError(err)}`, 'STORAGE_UNAVAILABLE', err);
  }
}
