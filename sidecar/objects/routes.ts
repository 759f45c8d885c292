/**
 * HTTP surface of object invocation (SPEC §2.1):
 * `ANY /v1/objects/{class}/{id}[/{path...}][?query]`.
 *
 * The path is parsed from the raw URL (not express params) so the id's
 * percent-encoding is decoded exactly once and the rest of the path reaches
 * the app byte for byte. The body is read raw, up to the limit (413 beyond).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CastellanError, Errors } from '../../common/errors.ts';
import type { RemoteObjects } from '../access/remote-call.ts';
import type { Router } from './router.ts';
import { parseIdSegment } from './subjects.ts';
import { filterHeaders } from './wire.ts';

const PREFIX = '/v1/objects';
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ObjectTarget {
  cls: string;
  id: string;
  /** `` or `/…`, still percent-encoded. */
  path: string;
  query: string;
}

/** Parses `/v1/objects/{class}/{id}[/{path...}][?query]` from a raw request URL. */
export function parseObjectUrl(url: string): ObjectTarget {
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  if (!pathname.startsWith(`${PREFIX}/`)) throw Errors.notFound(`No route for ${pathname}.`, 'ROUTE_NOT_FOUND');
  const rest = pathname.slice(PREFIX.length + 1);
  const s1 = rest.indexOf('/');
  const rawClass = s1 === -1 ? rest : rest.slice(0, s1);
  let cls: string;
  try {
    cls = decodeURIComponent(rawClass);
  } catch {
    throw Errors.classNotFound(rawClass);
  }
  if (cls === '') throw Errors.classNotFound(cls);
  if (s1 === -1) throw Errors.invalidId('Missing object id: use /v1/objects/{class}/{id}[/{path}].');
  const afterClass = rest.slice(s1 + 1);
  const s2 = afterClass.indexOf('/');
  const rawId = s2 === -1 ? afterClass : afterClass.slice(0, s2);
  const id = parseIdSegment(rawId);
  const path = s2 === -1 ? '' : afterClass.slice(s2);
  if (isReservedPath(path)) {
    throw new CastellanError(403, 'RESERVED_PATH', 'Paths under /.castellan/ are reserved for the sidecar (alarm delivery) and cannot be called.');
  }
  return { cls, id, path, query };
}

/** `/.castellan/…` reaches the app only from its own sidecar (alarms), never from callers. */
export function isReservedPath(path: string): boolean {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    decoded = path;
  }
  return /^\/+\.castellan(\/|$)/i.test(decoded);
}

/** Reads the whole body; past `limit` bytes, drains the rest and fails with 413. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    let tooLarge = Number.isFinite(declared) && declared > limit;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) reject(Errors.payloadTooLarge(`Request body is larger than ${limit} bytes, the most an object accepts.`));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => reject(Errors.badRequest(`Reading the request body failed: ${err.message}`, 'REQUEST_ABORTED')));
  });
}

/** Whether a raw request URL is an object call (`/v1/objects/...`), which the sidecar serves without express. */
export function isObjectCall(url: string | undefined): boolean {
  return url !== undefined && (url === PREFIX || url.startsWith(`${PREFIX}/`) || url.startsWith(`${PREFIX}?`));
}

export type ObjectHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * The object call handler, on node's request and response directly: the hot
 * path of the sidecar, so no express routing or response helpers (sidecar.ts
 * sends other paths to express; failures become the SPEC's error JSON there).
 *
 * `remote`: calls naming another namespace (`castellan-namespace: <ns>`, an
 * extension of SPEC §2.1; docs/security.md §3) go there through its door
 * (sidecar/access/remote-call.ts); without the header, or naming the own
 * namespace, the class is resolved in the caller's namespace as before.
 */
export function objectHandler(router: Router, remote?: { namespace: string; objects: RemoteObjects }): ObjectHandler {
  return async (req, res) => {
    const target = parseObjectUrl(req.url ?? '');
    const body = await readBody(req, router.maxBodyBytes);
    const given = req.headers['castellan-request-id'];
    const rid = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
    const inv = {
      ...target,
      method: req.method ?? 'GET',
      headers: filterHeaders(req.rawHeaders, callerOnly),
      body,
      rid,
    };
    const ns = req.headers['castellan-namespace'];
    const result = typeof ns === 'string' && ns !== '' && remote !== undefined && ns !== remote.namespace ? await remote.objects.invoke(ns, inv) : await router.invoke(inv);
    res.statusCode = result.status;
    for (const [k, v] of result.headers) res.appendHeader(k, v);
    res.end(result.body);
  };
}

/** Headers a caller sends to the sidecar, never forwarded to the object's app. */
const callerOnly = ['castellan-class', 'castellan-id', 'castellan-request-id', 'castellan-activation', 'castellan-namespace'];
