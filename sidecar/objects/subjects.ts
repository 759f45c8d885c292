/**
 * Names of everything durable objects put on NATS: the per-class JetStream
 * stream, its ownership / host-heartbeat subjects, the per-host RPC subject,
 * and the encoding of object ids into subject tokens.
 *
 * Object ids are any UTF-8 string of 1–256 characters. A subject token may not
 * contain `.`, `*`, `>` or whitespace, so ids are encoded as base64url (RFC
 * 4648 §5, no padding) of their UTF-8 bytes: the alphabet `A-Z a-z 0-9 - _` is
 * subject-safe and the mapping is a bijection, so the next issue can also put
 * storage keys under `…kv.<encId>.<encKey>` without ambiguity.
 *
 * Layout (one stream per namespace and class):
 *   stream   <PREFIX>_OBJ_<ns>_<class>           subjects <prefix>.obj.<ns>.<class>.>
 *   owner    <prefix>.obj.<ns>.<class>.own.<encId>
 *   host     <prefix>.obj.<ns>.<class>.host.<pod>
 *   storage  <prefix>.obj.<ns>.<class>.kv.<encId>.<keyHash>  (Objects II, sidecar/storage)
 *   alarm    <prefix>.obj.<ns>.<class>.alarm.<encId>          (schedule message, sidecar/alarms)
 *   fire     <prefix>.obj.<ns>.<class>.fire.<encId>           (where a due alarm lands)
 *   rpc      <prefix>.rpc.<ns>.<class>.<pod>.<callerNs>.<callerSa>   (core NATS request/reply;
 *            the caller's identity, common/access.ts, bound by the auth callout's grant)
 *   door     <prefix>.rpc.<ns>.<class>._.<callerNs>.<callerSa>       (any host of the class, queue
 *            group: callers of another namespace, who cannot read this one's host records)
 */
import { identityTokens, type CallerIdentity } from '../../common/access.ts';
import { Errors } from '../../common/errors.ts';

export const MAX_ID_CHARS = 256;

/** base64url without padding of the UTF-8 bytes of `id`. */
export function encodeId(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

export function decodeId(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/**
 * Validates a decoded id: 1–256 characters (Unicode code points), well-formed
 * UTF-16 (no lone surrogates, so it round-trips through UTF-8).
 */
export function validateId(id: string): string {
  const chars = [...id].length;
  if (chars === 0) throw Errors.invalidId('Object id must not be empty.');
  if (chars > MAX_ID_CHARS) throw Errors.invalidId(`Object id is ${chars} characters long; the limit is ${MAX_ID_CHARS}.`);
  if (/\p{Cs}/u.test(id)) throw Errors.invalidId('Object id is not valid Unicode.');
  return id;
}

/** Decodes a percent-encoded path segment as an object id (400 INVALID_ID when it is not one). */
export function parseIdSegment(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw Errors.invalidId('Object id is not valid percent-encoded UTF-8.');
  }
  return validateId(id);
}

/** Kubernetes resource names: DNS-1123 subdomain (lowercase, digits, `-`, `.`), ≤ 253. */
const classPattern = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function isValidClassName(name: string): boolean {
  return classPattern.test(name);
}

/** A name safe as one subject token and in a stream name: `[A-Za-z0-9_-]`, other characters become `_`. */
export function sanitizeToken(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}

export interface ClassNames {
  stream: string;
  /** Subject filter of the whole stream. */
  all: string;
  ownerPrefix: string;
  hostPrefix: string;
  owner(encId: string): string;
  host(pod: string): string;
  /** Filter matching every host heartbeat of the class. */
  hosts: string;
  /** RPC subject of one host of the class, as `caller` calls it. */
  rpc(pod: string, caller: CallerIdentity): string;
  /** What a host subscribes to: its RPC subject, any caller. */
  rpcServe(pod: string): string;
  /** Door of the class (any host; the pod token `_` is no pod name), as `caller` calls it. */
  door(caller: CallerIdentity): string;
  /** What every host subscribes to (queue group `doorQueue`): the class's door, any caller. */
  doorServe: string;
  /** Storage: one subject per key of an object (`keyToken` from storage/layout.ts). */
  kv(encId: string, keyToken: string): string;
  /** Filter matching every key subject of an object. */
  kvAll(encId: string): string;
  /** The object's alarm (a JetStream message schedule). */
  alarm(encId: string): string;
  /** Where the alarm's schedule publishes when due. */
  fire(encId: string): string;
  /** Filter matching every fired alarm of the class. */
  fires: string;
  /** Storage: per-object check subject (short-lived messages that carry a per-key expected sequence, sidecar/storage/journal.ts). */
  chk(encId: string): string;
}

/** Queue group of a class's door subscriptions: one host takes each door request. */
export const doorQueue = 'door';

export function classNames(prefix: string, namespace: string, cls: string): ClassNames {
  const ns = sanitizeToken(namespace);
  const c = sanitizeToken(cls);
  const base = `${prefix}.obj.${ns}.${c}`;
  return {
    stream: `${sanitizeToken(prefix).toUpperCase()}_OBJ_${ns}_${c}`,
    all: `${base}.>`,
    ownerPrefix: `${base}.own.`,
    hostPrefix: `${base}.host.`,
    owner: (encId) => `${base}.own.${encId}`,
    host: (pod) => `${base}.host.${sanitizeToken(pod)}`,
    hosts: `${base}.host.>`,
    rpc: (pod, caller) => `${prefix}.rpc.${ns}.${c}.${sanitizeToken(pod)}.${identityTokens(caller)}`,
    rpcServe: (pod) => `${prefix}.rpc.${ns}.${c}.${sanitizeToken(pod)}.*.*`,
    door: (caller) => `${prefix}.rpc.${ns}.${c}._.${identityTokens(caller)}`,
    doorServe: `${prefix}.rpc.${ns}.${c}._.*.*`,
    kv: (encId, keyToken) => `${base}.kv.${encId}.${keyToken}`,
    kvAll: (encId) => `${base}.kv.${encId}.*`,
    alarm: (encId) => `${base}.alarm.${encId}`,
    fire: (encId) => `${base}.fire.${encId}`,
    fires: `${base}.fire.*`,
    chk: (encId) => `${base}.chk.${encId}`,
  };
}
