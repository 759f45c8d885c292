/**
 * The forwarding protocol between a caller sidecar and an object host, carried
 * in core NATS request/reply on the host's RPC subject (subjects.ts).
 *
 * One message = [u32 big-endian length of meta][meta as UTF-8 JSON][body bytes],
 * so bodies are binary-safe and headers keep their exact names, order and
 * repeated values. Every reply says whether the app may have run the request:
 * only `retry` and `redirect` replies (never executed) let the caller try again.
 * A request with `ack` first gets an empty message when the host takes it
 * (call-channel.ts): after that it may run.
 */

export type HeaderList = [string, string][];

export interface RequestMeta {
  v: 1;
  /** Object class and id (decoded). */
  cls: string;
  id: string;
  method: string;
  /** Path below the object, percent-encoded as received, `` or starting with `/`. */
  path: string;
  /** Raw query string without `?`, or ``. */
  query: string;
  headers: HeaderList;
  /** Request id: the same on every retry, so a host runs it at most once. */
  rid: string;
  /** Time the caller still waits (ms). */
  timeoutMs: number;
  /** The caller wants a receipt: an empty message the moment the host takes the request (call-channel.ts). */
  ack?: boolean;
  /**
   * The host session the caller addressed (its view of the host's lease). A
   * host in another session refuses the request unexecuted (`retry`): the
   * caller may already have sent it elsewhere, having seen that session end
   * before a receipt (router.ts unlessHostDies).
   */
  session?: string;
}

export type ReplyMeta =
  | { t: 'ok'; status: number; headers: HeaderList; pod: string; token: number }
  | { t: 'error'; status: number; code: string; message: string; retryable: boolean }
  /** Owned by another live host: send it there. Not executed. */
  | { t: 'redirect'; pod: string }
  /** This host cannot take it now (draining, lease lapsed, handoff in progress). Not executed. */
  | { t: 'retry'; reason: string };

/** The `retry` reason of a host that got a request addressed to an earlier session of its own (RequestMeta.session). */
export const EARLIER_SESSION = 'addressed to an earlier session of this host';

/** Room kept for the meta (headers) inside one NATS message. */
export const META_HEADROOM = 64 * 1024;

export function encodeEnvelope(meta: RequestMeta | ReplyMeta, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const m = Buffer.from(JSON.stringify(meta), 'utf8');
  const out = new Uint8Array(4 + m.length + body.length);
  new DataView(out.buffer).setUint32(0, m.length);
  out.set(m, 4);
  out.set(body, 4 + m.length);
  return out;
}

export function decodeEnvelope<T>(data: Uint8Array): { meta: T; body: Uint8Array } {
  if (data.length < 4) throw new Error('envelope too short');
  const len = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
  if (4 + len > data.length) throw new Error('envelope meta length out of range');
  const meta = JSON.parse(Buffer.from(data.subarray(4, 4 + len)).toString('utf8')) as T;
  return { meta, body: data.subarray(4 + len) };
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and ones the proxy recomputes; never forwarded. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
]);

/** Headers from a Node raw header array, without hop-by-hop ones (and ones `connection` names). */
export function filterHeaders(raw: string[], drop: Iterable<string> = []): HeaderList {
  const extra = new Set([...drop].map((h) => h.toLowerCase()));
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'connection') {
      for (const tok of (raw[i + 1] as string).split(',')) extra.add(tok.trim().toLowerCase());
    }
  }
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || extra.has(lower)) continue;
    out.push([name, raw[i + 1] as string]);
  }
  return out;
}
