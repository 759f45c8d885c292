/**
 * Names of everything a replicated queue puts on NATS.
 *
 * Per queue (namespace ns, queue q, subject base `<prefix>.q.<ns>.<q>`):
 *   meta stream  <PREFIX>_QM_<ns>_<q>          subjects <base>.meta.>   (R3, one record per subject)
 *     config     <base>.meta.config            the queue's settings (queue hosts / operator write it)
 *     host       <base>.meta.host.<pod>        heartbeat chain of one queue host (its lease)
 *     takeover   <base>.meta.to.<pod>.<session>.<death|birth>  takeover log: who holds what (takeover.ts)
 *     claim      <base>.meta.claim.<msgId>     (earlier versions: per-message promotion claims; no longer written)
 *     tomb       <base>.meta.tomb.<pod>.<key>  a delete/purge kept for a host that was down (per-message TTL)
 *     dedup      <base>.meta.dedup.<hash>      deduplication marker (TTL 5 min)
 *   host stream  <PREFIX>_QH_<ns>_<q>_<pod>    subjects <base>.h.<pod>.>  (one per host)
 *     message    <base>.h.<pod>.m.<msgId>      the replica (immutable)
 *     state      <base>.h.<pod>.s.<msgId>      receive count, invisible-until, replica list
 *     purge mark <base>.h.<pod>.x.purge        enqueue time up to which a purge removed everything
 *   rpc          <prefix>.qrpc.<ns>.<q>.<pod>.<callerNs>.<callerSa>   core NATS request/reply to one
 *                host, naming the caller (common/access.ts; bound by the auth callout's grant)
 *   door         <prefix>.qrpc.<ns>.<q>._.<callerNs>.<callerSa>       any host of the queue (queue
 *                group), for callers of other namespaces (door.ts); `_` is never a pod name
 *   wake         <prefix>.qwake.<ns>.<q>        "a message may be visible now" (long polls)
 */
import { createHash } from 'node:crypto';
import { identityTokens, type CallerIdentity } from '../../common/access.ts';
import { sanitizeToken } from '../objects/subjects.ts';

/** ReplicatedQueue names are Kubernetes resource names. */
export const queueNamePattern = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function isValidQueueName(name: string): boolean {
  return queueNamePattern.test(name);
}

export interface QueueNames {
  metaStream: string;
  metaAll: string;
  config: string;
  host(pod: string): string;
  hosts: string;
  claim(id: string): string;
  claims: string;
  /** A takeover-log record (takeover.ts): death or birth of one host session. */
  takeover(pod: string, session: string, kind: 'death' | 'birth'): string;
  takeovers: string;
  tomb(pod: string, key: string): string;
  tombs(pod: string): string;
  dedup(dedupId: string): string;
  /** Prefix of every host stream of the queue. */
  hostStreamPrefix: string;
  hostStream(pod: string): string;
  /** Subject prefix of every host stream of the queue. */
  hostSubjectPrefix: string;
  hostAll(pod: string): string;
  message(pod: string, id: string): string;
  state(pod: string, id: string): string;
  /** The host's purge mark (messages enqueued up to it are gone). */
  purgeMark(pod: string): string;
  /** Filter of both subjects of one message in one host stream. */
  messageAll(pod: string, id: string): string;
  /** RPC subject of one host, as `caller` calls it. */
  rpc(pod: string, caller: CallerIdentity): string;
  /** What a host subscribes to: its RPC subject, any caller. */
  rpcServe(pod: string): string;
  /** The queue's door (door.ts), as `caller` calls it. */
  door(caller: CallerIdentity): string;
  /** What every host subscribes to (queue group): the door, any caller. */
  doorServe: string;
  wake: string;
}

export function queueNames(prefix: string, namespace: string, queue: string): QueueNames {
  const ns = sanitizeToken(namespace);
  const q = sanitizeToken(queue);
  const P = sanitizeToken(prefix).toUpperCase();
  const base = `${prefix}.q.${ns}.${q}`;
  const pod = (p: string) => sanitizeToken(p);
  return {
    metaStream: `${P}_QM_${ns}_${q}`,
    metaAll: `${base}.meta.>`,
    config: `${base}.meta.config`,
    host: (p) => `${base}.meta.host.${pod(p)}`,
    hosts: `${base}.meta.host.>`,
    claim: (id) => `${base}.meta.claim.${id}`,
    claims: `${base}.meta.claim.>`,
    takeover: (p, session, kind) => `${base}.meta.to.${pod(p)}.${sanitizeToken(session)}.${kind}`,
    takeovers: `${base}.meta.to.>`,
    tomb: (p, key) => `${base}.meta.tomb.${pod(p)}.${key}`,
    tombs: (p) => `${base}.meta.tomb.${pod(p)}.>`,
    dedup: (d) => `${base}.meta.dedup.${createHash('sha256').update(d, 'utf8').digest('base64url').slice(0, 32)}`,
    hostStreamPrefix: `${P}_QH_${ns}_${q}_`,
    hostStream: (p) => `${P}_QH_${ns}_${q}_${pod(p)}`,
    hostSubjectPrefix: `${base}.h.`,
    hostAll: (p) => `${base}.h.${pod(p)}.>`,
    message: (p, id) => `${base}.h.${pod(p)}.m.${id}`,
    state: (p, id) => `${base}.h.${pod(p)}.s.${id}`,
    purgeMark: (p) => `${base}.h.${pod(p)}.x.purge`,
    messageAll: (p, id) => `${base}.h.${pod(p)}.*.${id}`,
    rpc: (p, caller) => `${prefix}.qrpc.${ns}.${q}.${pod(p)}.${identityTokens(caller)}`,
    rpcServe: (p) => `${prefix}.qrpc.${ns}.${q}.${pod(p)}.*.*`,
    door: (caller) => `${prefix}.qrpc.${ns}.${q}._.${identityTokens(caller)}`,
    doorServe: `${prefix}.qrpc.${ns}.${q}._.*.*`,
    wake: `${prefix}.qwake.${ns}.${q}`,
  };
}

/** Message ids are UUIDs: subject-safe tokens. */
export const messageIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
