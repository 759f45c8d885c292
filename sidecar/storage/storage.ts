/**
 * Object storage of one object host (SPEC §2.2): the per-activation states
 * (object-state.ts) keyed by object and fencing token, the ownership gate
 * (only objects this host serves right now; else 409 NOT_OWNER), and the
 * alarm record of each object (sidecar/alarms explains firing), and the
 * host's value cache (value-cache.ts, VALUE_CACHE_BYTES) shared by them.
 */
import { Errors } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { ActiveObject, ObjectHost } from '../objects/host.ts';
import type { ClassNames } from '../objects/subjects.ts';
import { encodeId } from '../objects/subjects.ts';
import { isNoMessage } from '../nats-errors.ts';
import type { Journal } from './journal.ts';
import type { Entry } from './key-index.ts';
import { ValueCache } from './value-cache.ts';
import { validateKey, validateValue, type ListRange } from './keys.ts';
import type { StorageMetrics } from './metrics.ts';
import { ObjectState, type StateContext } from './object-state.ts';
import type { Write } from './transaction.ts';
import type { ObjectIndexHook } from '../listing/summary.ts';

export const ALARM_HEADER = 'Castellan-Alarm';
/** Bytes of recently read or written values one host keeps (least recently used out first). */
export const VALUE_CACHE_BYTES = 32 * 1024 * 1024;

/** The object a storage call is for, and the turn / activation the app says it comes from (its request headers, optional). */
export interface ObjectRef {
  cls: string;
  id: string;
  turn?: string;
  activation?: string;
}

export interface AlarmRecord {
  /** Due time, epoch ms. */
  dueMs: number;
  /** As the app gave it (RFC 3339 string or epoch ms), returned by GET. */
  at: string | number;
}

/** The storage API of the sidecar; undefined host = not an object host (everything is NOT_OWNER). */
export class Storage {
  private readonly host: ObjectHost | undefined;
  private readonly ctx: StateContext | undefined;
  private readonly states = new Map<string, ObjectState>();
  readonly metrics: StorageMetrics;

  constructor(host: ObjectHost | undefined, journal: Journal, names: ClassNames | undefined, metrics: StorageMetrics, log: Logger, index?: ObjectIndexHook) {
    this.host = host;
    this.metrics = metrics;
    if (host !== undefined && names !== undefined) {
      // index: listing hook (sidecar/listing/summary.ts), used by every commit.
      this.ctx = {
        cls: host.cls,
        names,
        journal,
        metrics,
        log,
        cache: new ValueCache(VALUE_CACHE_BYTES),
        refence: (encId, token, adopt) => host.refence(encId, token, adopt),
        ...(index === undefined ? {} : { index }),
      };
      host.onActivate((obj) => {
        // Preload: activation loads the object's key index (not its values) in the background.
        this.stateFor(obj).preload();
      });
      host.onDeactivate((encId, token) => {
        const s = this.states.get(encId);
        if (s !== undefined && s.token === token) {
          s.close();
          this.states.delete(encId);
        }
      });
    }
  }

  private stateFor(obj: ActiveObject): ObjectState {
    const cur = this.states.get(obj.encId);
    if (cur !== undefined && cur.token === obj.token && !cur.isDead) return cur;
    cur?.close();
    const s = new ObjectState(this.ctx!, obj.encId, obj.id, obj.token);
    this.states.set(obj.encId, s);
    return s;
  }

  /**
   * The state of an object whose turn is running here now: 409 NOT_OWNER when
   * this sidecar does not serve it, 410 TURN_NOT_RUNNING when no turn of it
   * runs (or it is stuck, or the call names a turn or activation that is over).
   */
  state(ref: ObjectRef): ObjectState {
    if (this.host === undefined || this.host.cls !== ref.cls || this.ctx === undefined) {
      throw Errors.notOwner(`This sidecar does not host class "${ref.cls}"; storage is served only by the sidecar of the pod that owns the object.`);
    }
    const claimed: { turn?: string; activation?: string } = {};
    if (ref.turn !== undefined) claimed.turn = ref.turn;
    if (ref.activation !== undefined) claimed.activation = ref.activation;
    return this.stateFor(this.host.turnGate(ref.id, claimed));
  }

  async get(ref: ObjectRef, key: string): Promise<Entry | undefined> {
    validateKey(key);
    return this.state(ref).get(key);
  }

  async list(ref: ObjectRef, range: ListRange): Promise<{ entries: { key: string; entry: Entry }[]; truncated: boolean }> {
    return this.state(ref).list(range);
  }

  async put(ref: ObjectRef, key: string, value: Uint8Array, cond: { ifMatch?: number | '*'; ifNoneMatch?: boolean }): Promise<number> {
    validateKey(key);
    validateValue(value);
    const checks: Write['checks'] = [];
    if (cond.ifMatch === '*') checks.push({ key, exists: true });
    else if (cond.ifMatch !== undefined) checks.push({ key, version: cond.ifMatch });
    if (cond.ifNoneMatch === true) checks.push({ key, absent: true });
    const r = await this.state(ref).write({ checks, ops: [{ op: 'put', key, value }] });
    return r.versions.get(key)!;
  }

  async delete(ref: ObjectRef, key: string): Promise<boolean> {
    validateKey(key);
    const r = await this.state(ref).write({ checks: [], ops: [{ op: 'delete', key }] });
    return r.deleted.get(key) === true;
  }

  async transaction(ref: ObjectRef, write: Write): Promise<Record<string, number>> {
    const r = await this.state(ref).write(write);
    return Object.fromEntries(r.versions);
  }

  deleteAll(ref: ObjectRef): Promise<{ deleted: number }> {
    return this.state(ref).deleteAll();
  }

  /** Sets the object's alarm: a JetStream message schedule, fenced like any write. */
  async setAlarm(ref: ObjectRef, alarm: AlarmRecord): Promise<void> {
    const s = this.state(ref);
    const names = this.ctx!.names;
    const encId = encodeId(ref.id);
    // A schedule at or before now fires at once; keep it a little ahead so the server accepts it.
    const due = new Date(Math.max(alarm.dueMs, Date.now() + 50));
    await s.raw({
      subject: names.alarm(encId),
      data: new TextEncoder().encode(JSON.stringify({ id: ref.id, dueMs: alarm.dueMs, at: alarm.at })),
      headers: { 'Nats-Schedule': `@at ${due.toISOString()}`, 'Nats-Schedule-Target': names.fire(encId), [ALARM_HEADER]: 'set' },
    });
  }

  /** The pending alarm, read from the stream leader. */
  async getAlarm(ref: ObjectRef): Promise<AlarmRecord | undefined> {
    this.state(ref);
    const names = this.ctx!.names;
    let m;
    try {
      m = await this.ctx!.journal.last(names.stream, names.alarm(encodeId(ref.id)));
    } catch (err) {
      if (isNoMessage(err)) return undefined;
      throw Errors.unavailable(`Reading the alarm failed: ${String(err)}`, 'STORAGE_UNAVAILABLE', err);
    }
    if (m === undefined || m.headers.get(ALARM_HEADER) !== 'set' || !m.headers.has('Nats-Schedule')) return undefined;
    const rec = JSON.parse(new TextDecoder().decode(m.data)) as { dueMs: number; at: string | number };
    return { dueMs: rec.dueMs, at: rec.at };
  }

  /** Cancels the alarm by replacing its schedule message with a (fenced, expiring) marker. */
  async deleteAlarm(ref: ObjectRef): Promise<boolean> {
    const existed = (await this.getAlarm(ref)) !== undefined;
    const s = this.state(ref);
    const names = this.ctx!.names;
    await s.raw({ subject: names.alarm(encodeId(ref.id)), data: new Uint8Array(0), headers: { [ALARM_HEADER]: 'deleted', 'Nats-TTL': '1h' } });
    return existed;
  }
}
