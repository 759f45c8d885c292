/**
 * HTTP surface of object storage and alarms (SPEC §2.2), for the app on the
 * owning pod:
 *   GET|PUT|DELETE /v1/storage/{class}/{id}/keys/{key}
 *   GET            /v1/storage/{class}/{id}/keys?prefix=&start=&startAfter=&end=&limit=&reverse=
 *   POST           /v1/storage/{class}/{id}/transaction
 *   DELETE         /v1/storage/{class}/{id}
 *   GET|PUT|DELETE /v1/storage/{class}/{id}/alarm
 * Paths are parsed from the raw URL: the id and key are percent-decoded once;
 * a key may also contain raw `/` (everything after `/keys/` is the key).
 *
 * Storage is the hot path of a turn (every read and write of the app), so
 * like object calls it is served on node's request and response directly,
 * without express (sidecar.ts routes it here; a thrown error becomes the
 * SPEC's error JSON there).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { z } from 'zod';
import { foreignNamespaceRefusal } from '../../common/access.ts';
import { CastellanError, Errors, fromZod } from '../../common/errors.ts';
import { readBody } from '../objects/routes.ts';
import { parseIdSegment } from '../objects/subjects.ts';
import { DEFAULT_LIST_LIMIT, invalidKey, MAX_LIST_LIMIT, MAX_VALUE_BYTES, type ListRange } from './keys.ts';
import type { ObjectRef, Storage } from './storage.ts';
import { parseTransaction } from './transaction.ts';

const PREFIX = '/v1/storage';
/** A transaction body: up to 128 ops of base64 values (beyond → 413). */
const MAX_TX_BODY = 48 * 1024 * 1024;

export type StorageTarget =
  | { cls: string; id: string; kind: 'object' }
  | { cls: string; id: string; kind: 'keys'; query: URLSearchParams }
  | { cls: string; id: string; kind: 'key'; key: string }
  | { cls: string; id: string; kind: 'transaction' }
  | { cls: string; id: string; kind: 'alarm' };

function decodePart(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw what === 'key' ? invalidKey('Storage key is not valid percent-encoded UTF-8.') : Errors.badRequest(`The ${what} is not valid percent-encoded UTF-8.`);
  }
}

/** Parses a storage URL (pure). */
export function parseStorageUrl(url: string): StorageTarget {
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
  if (!pathname.startsWith(`${PREFIX}/`)) throw Errors.notFound(`No route for ${pathname}.`, 'ROUTE_NOT_FOUND');
  const parts = pathname.slice(PREFIX.length + 1).split('/');
  const cls = decodePart(parts[0] ?? '', 'class');
  if (cls === '') throw Errors.classNotFound(cls);
  if (parts.length < 2) throw Errors.invalidId('Missing object id: use /v1/storage/{class}/{id}/….');
  const id = parseIdSegment(parts[1]!);
  const rest = parts.slice(2);
  if (rest.length === 0 || (rest.length === 1 && rest[0] === '')) return { cls, id, kind: 'object' };
  if (rest[0] === 'keys') {
    if (rest.length === 1) return { cls, id, kind: 'keys', query };
    const key = decodePart(rest.slice(1).join('/'), 'key');
    if (key === '') throw invalidKey('Storage key must not be empty.');
    return { cls, id, kind: 'key', key };
  }
  if (rest.length === 1 && rest[0] === 'transaction') return { cls, id, kind: 'transaction' };
  if (rest.length === 1 && rest[0] === 'alarm') return { cls, id, kind: 'alarm' };
  throw Errors.notFound(`No storage route for ${pathname}.`, 'ROUTE_NOT_FOUND');
}

const zBool = z.enum(['true', 'false', '1', '0', '']).transform((v) => v === 'true' || v === '1');

const listQuerySchema = z
  .object({
    prefix: z.string().optional(),
    start: z.string().optional(),
    startAfter: z.string().optional(),
    end: z.string().optional(),
    limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(DEFAULT_LIST_LIMIT),
    reverse: zBool.default(false),
  })
  .strict();

export function parseListQuery(query: URLSearchParams): ListRange {
  const obj: Record<string, string> = {};
  for (const [k, v] of query) {
    if (k in obj) throw Errors.badRequest(`Query parameter "${k}" is given more than once.`);
    obj[k] = v;
  }
  const r = listQuerySchema.safeParse(obj);
  if (!r.success) throw fromZod(r.error, 'list query');
  const out: ListRange = { limit: r.data.limit, reverse: r.data.reverse };
  if (r.data.prefix !== undefined && r.data.prefix !== '') out.prefix = r.data.prefix;
  if (r.data.start !== undefined && r.data.start !== '') out.start = r.data.start;
  if (r.data.startAfter !== undefined && r.data.startAfter !== '') out.startAfter = r.data.startAfter;
  if (r.data.end !== undefined && r.data.end !== '') out.end = r.data.end;
  return out;
}

const alarmSchema = z
  .object({
    at: z.union([
      z.number().int().min(0).max(8.64e15),
      z.string().refine((s) => /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i.test(s) && !Number.isNaN(Date.parse(s)), 'expected an RFC 3339 date-time'),
    ]),
  })
  .strict();

export function parseAlarm(body: unknown): { dueMs: number; at: string | number } {
  const r = alarmSchema.safeParse(body);
  if (!r.success) throw fromZod(r.error, 'alarm');
  const at = r.data.at;
  return { at, dueMs: typeof at === 'number' ? at : Date.parse(at) };
}

function parseVersion(h: string | string[] | undefined, name: string): number | '*' | undefined {
  if (h === undefined) return undefined;
  const v = Array.isArray(h) ? h.join(',') : h;
  if (v.trim() === '*') return '*';
  const m = /^\s*"?(\d{1,15})"?\s*$/.exec(v);
  if (m === null) throw Errors.badRequest(`Header ${name} must be a version number, got "${v}".`, 'INVALID_HEADER');
  return Number(m[1]);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) throw Errors.badRequest('Request body must be JSON.', 'INVALID_JSON');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw Errors.badRequest(`Request body is not valid JSON: ${(err as Error).message}`, 'INVALID_JSON');
  }
}

function methodNotAllowed(method: string, allowed: string): CastellanError {
  return Errors.methodNotAllowed(`${method} is not allowed here; use ${allowed}.`);
}

/** Whether a raw request URL is for the storage API (`/v1/storage…`), which the sidecar serves without express. */
export function isStorageCall(url: string | undefined): boolean {
  return url !== undefined && (url === PREFIX || url.startsWith(`${PREFIX}/`) || url.startsWith(`${PREFIX}?`));
}

/** A 200 with a JSON body, in one write. */
function sendJson(res: ServerResponse, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export type StorageHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * The storage API on node's request and response. `namespace`: the sidecar's
 * own; a request naming another in `castellan-namespace` is refused (storage
 * never crosses namespaces, docs/security.md).
 */
export function storageHandler(storage: Storage, namespace: string): StorageHandler {
  return async (req, res) => {
    const url = req.url ?? '';
    const refusal = foreignNamespaceRefusal(req.headers['castellan-namespace'], namespace, url);
    if (refusal !== undefined) throw refusal;
    const t = parseStorageUrl(url);
    const m = req.method ?? 'GET';
    const ref: ObjectRef = { cls: t.cls, id: t.id };
    const turn = req.headers['castellan-turn'];
    const activation = req.headers['castellan-activation'];
    if (typeof turn === 'string' && turn !== '') ref.turn = turn;
    if (typeof activation === 'string' && activation !== '') ref.activation = activation;
    const count = (kind: string, p: Promise<void>) =>
      p.then(
        () => storage.metrics.ops.inc({ class: t.cls, kind, outcome: 'ok' }),
        (err: unknown) => {
          storage.metrics.ops.inc({ class: t.cls, kind, outcome: err instanceof CastellanError ? err.code : 'INTERNAL' });
          throw err;
        },
      );
    switch (t.kind) {
      case 'key': {
        if (m === 'GET' || m === 'HEAD') {
          return count('get', (async () => {
            const e = await storage.get(ref, t.key);
            if (e === undefined) throw Errors.notFound(`Key "${t.key.slice(0, 200)}" does not exist.`, 'KEY_NOT_FOUND');
            const headers = { 'content-type': 'application/octet-stream', 'castellan-version': String(e.version), 'content-length': e.value.length };
            res.writeHead(200, headers);
            res.end(m === 'HEAD' ? undefined : Buffer.from(e.value.buffer, e.value.byteOffset, e.value.length));
          })());
        }
        if (m === 'PUT') {
          return count('put', (async () => {
            const ifMatch = parseVersion(req.headers['if-match'], 'if-match');
            const inm = req.headers['if-none-match'];
            if (inm !== undefined && inm.trim() !== '*') throw Errors.badRequest('Header if-none-match supports only "*".', 'INVALID_HEADER');
            const value = await readBody(req, MAX_VALUE_BYTES);
            const version = await storage.put(ref, t.key, value, { ...(ifMatch === undefined ? {} : { ifMatch }), ifNoneMatch: inm !== undefined });
            sendJson(res, { version }, { 'castellan-version': String(version) });
          })());
        }
        if (m === 'DELETE') {
          return count('delete', (async () => {
            sendJson(res, { deleted: await storage.delete(ref, t.key) });
          })());
        }
        throw methodNotAllowed(m, 'GET, PUT or DELETE');
      }
      case 'keys': {
        if (m !== 'GET') throw methodNotAllowed(m, 'GET');
        return count('list', (async () => {
          const range = parseListQuery(t.query);
          const { entries, truncated } = await storage.list(ref, range);
          sendJson(res, {
            entries: entries.map(({ key, entry }) => ({ key, value: Buffer.from(entry.value).toString('base64'), version: entry.version })),
            truncated,
          });
        })());
      }
      case 'transaction': {
        if (m !== 'POST') throw methodNotAllowed(m, 'POST');
        return count('transaction', (async () => {
          const write = parseTransaction(await readJson(req, MAX_TX_BODY));
          const versions = await storage.transaction(ref, write);
          sendJson(res, { committed: true, versions });
        })());
      }
      case 'object': {
        if (m !== 'DELETE') throw methodNotAllowed(m, 'DELETE');
        return count('delete_all', (async () => {
          const r = await storage.deleteAll(ref);
          sendJson(res, { deleted: r.deleted });
        })());
      }
      case 'alarm': {
        if (m === 'GET') {
          return count('alarm_get', (async () => {
            const a = await storage.getAlarm(ref);
            if (a === undefined) throw Errors.notFound(`Object ${t.cls}/${t.id} has no alarm set.`, 'ALARM_NOT_FOUND');
            sendJson(res, { at: a.at });
          })());
        }
        if (m === 'PUT') {
          return count('alarm_set', (async () => {
            const a = parseAlarm(await readJson(req, 64 * 1024));
            await storage.setAlarm(ref, a);
            sendJson(res, { at: a.at });
          })());
        }
        if (m === 'DELETE') {
          return count('alarm_delete', (async () => {
            sendJson(res, { deleted: await storage.deleteAlarm(ref) });
          })());
        }
        throw methodNotAllowed(m, 'GET, PUT or DELETE');
      }
    }
  };
}
