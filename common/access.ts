/**
 * Who may call what (issue 16 item 3, docs/security.md §3): the access policy
 * of a DurableObject or ReplicatedQueue, the caller identity a call carries,
 * and the decision. Pure: no I/O, no clock.
 *
 * The policy. A resource's own namespace may always call it, every
 * ServiceAccount of it: NATS gives all pods of a namespace the same account
 * and JetStream (operator/authcallout/decision.ts), so a narrower rule inside
 * the namespace could not be enforced (a pod holding a raw NATS client could
 * read the streams directly) and is not offered. `spec.access.callers` adds
 * other namespaces, each either whole or restricted to named ServiceAccounts.
 * Everything else is refused: `403 FORBIDDEN`, naming caller and resource.
 *
 * The identity. A call names its caller in its subject, as the last two
 * tokens (`<prefix>.rpc|qrpc.<ns>.<name>.<pod>.<callerNs>.<callerSa>`,
 * sidecar/objects/subjects.ts, sidecar/queues/names.ts). With the auth
 * callout, a connection may publish calls only under its own, reviewed
 * identity (decision.ts `namespacePermissions`), so the tokens a host reads
 * were checked by NATS, not stated by the caller. Without the callout (plain
 * NATS, `castellan dev`) they are what the calling sidecar states: enforced,
 * not verified.
 *
 * Token encoding: namespaces are DNS labels (subject-safe as they are);
 * ServiceAccount names are DNS subdomains, whose only character a subject
 * token cannot hold is `.`: it becomes `_`, which no Kubernetes name has, so
 * the mapping is a bijection.
 */
import { z } from 'zod';
import { CastellanError } from './errors.ts';

export interface CallerIdentity {
  namespace: string;
  serviceAccount: string;
}

const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Whether `ns` can be a Kubernetes namespace name (a DNS label). */
export function isNamespaceName(ns: string): boolean {
  return dnsLabel.test(ns);
}
const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** One entry of `spec.access.callers` (docs/crds.md). */
export const accessCallerSchema = z
  .object({
    namespace: z.string().regex(dnsLabel, 'expected a namespace name'),
    /** ServiceAccount names of that namespace; absent = every ServiceAccount of it. */
    serviceAccounts: z.array(z.string().regex(dnsSubdomain, 'expected a ServiceAccount name')).min(1).optional(),
  })
  .strict();

export const accessCallersSchema = z.array(accessCallerSchema).max(256);

export type AccessCaller = z.infer<typeof accessCallerSchema>;

export interface AccessPolicy {
  /** The resource's own namespace (always allowed). */
  namespace: string;
  /** Other namespaces that may call it (`spec.access.callers`). */
  callers: AccessCaller[];
}

/** The env form the operator gives the sidecar (`CASTELLAN_ACCESS_CALLERS`): JSON, or empty = none. */
export function parseAccessCallers(text: string | undefined): AccessCaller[] {
  if (text === undefined || text.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error('CASTELLAN_ACCESS_CALLERS is not JSON: expected [{"namespace":"team-a","serviceAccounts":["web"]}, …]');
  }
  const r = accessCallersSchema.safeParse(raw);
  if (!r.success) throw new Error(`CASTELLAN_ACCESS_CALLERS is not a list of callers: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** The same list as the env value (stable: the operator hashes it into the pod template). */
export function formatAccessCallers(callers: readonly AccessCaller[] | undefined): string {
  if (callers === undefined || callers.length === 0) return '';
  return JSON.stringify(callers.map((c) => (c.serviceAccounts === undefined ? { namespace: c.namespace } : { namespace: c.namespace, serviceAccounts: [...c.serviceAccounts] })));
}

export type ResourceKind = 'DurableObject' | 'ReplicatedQueue';

/**
 * Whether `caller` may call the resource; the refusal is the SPEC-shaped 403.
 * `hostOnly`: an operation only the resource's own hosts send each other
 * (queue replication): never allowed from another namespace.
 */
export function decideAccess(policy: AccessPolicy, caller: CallerIdentity, kind: ResourceKind, name: string, hostOnly = false): true | CastellanError {
  if (caller.namespace === policy.namespace) return true;
  if (hostOnly) return forbidden(caller, kind, policy.namespace, name);
  for (const c of policy.callers) {
    if (c.namespace !== caller.namespace) continue;
    if (c.serviceAccounts === undefined || c.serviceAccounts.includes(caller.serviceAccount)) return true;
  }
  return forbidden(caller, kind, policy.namespace, name);
}

export function forbidden(caller: CallerIdentity, kind: ResourceKind, namespace: string, name: string): CastellanError {
  return new CastellanError(
    403,
    'FORBIDDEN',
    `ServiceAccount ${caller.namespace}/${caller.serviceAccount} may not call ${kind} ${namespace}/${name}: its spec.access.callers does not allow it (only its own namespace may, by default).`,
  );
}

/**
 * The refusal of a listing or storage request (`path`) that names another
 * namespace than the sidecar's own in `castellan-namespace`; undefined when
 * it names none or the own one. Only object and queue calls cross
 * namespaces (sidecar/access/remote-call.ts, remote-queues.ts).
 */
export function foreignNamespaceRefusal(header: string | string[] | undefined, own: string, path: string): CastellanError | undefined {
  const named = Array.isArray(header) ? header : header === undefined || header === '' ? [] : [header];
  const other = named.find((n) => n !== own);
  if (other === undefined) return undefined;
  const what = path.startsWith('/v1/storage') ? 'Object storage' : 'Listing, inspecting and deleting objects';
  return new CastellanError(403, 'FORBIDDEN', `${what} reach only this sidecar's own namespace "${own}"; namespace "${other}" cannot be used from here (only object and queue calls may name another namespace, when its resource allows it).`);
}

/** The two subject tokens that name a caller. */
export function identityTokens(id: CallerIdentity): string {
  return `${id.namespace}.${id.serviceAccount.replaceAll('.', '_')}`;
}

/**
 * The caller named by the last two tokens of a call subject, or undefined
 * when they are not an identity (a malformed or foreign subject: refuse it).
 */
export function identityFromSubject(subject: string): CallerIdentity | undefined {
  const parts = subject.split('.');
  if (parts.length < 2) return undefined;
  const namespace = parts[parts.length - 2] as string;
  const serviceAccount = (parts[parts.length - 1] as string).replaceAll('_', '.');
  if (!dnsLabel.test(namespace) || !dnsSubdomain.test(serviceAccount)) return undefined;
  return { namespace, serviceAccount };
}

/**
 * The ServiceAccount name a projected ServiceAccount token names (`sub` =
 * `system:serviceaccount:<ns>:<name>`), read without verifying it: the
 * sidecar states the identity NATS will hold it to (the callout verifies the
 * token and grants calls only under this name). Undefined when it names none.
 */
export function serviceAccountOfToken(token: string): string | undefined {
  const part = token.trim().split('.')[1];
  if (part === undefined) return undefined;
  let sub: unknown;
  try {
    sub = (JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
  } catch {
    return undefined;
  }
  const m = typeof sub === 'string' ? /^system:serviceaccount:[a-z0-9-]+:([a-z0-9][-a-z0-9.]*)$/.exec(sub) : null;
  return m !== null && dnsSubdomain.test(m[1] as string) ? m[1] : undefined;
}

/** Validates a stated identity (sidecar config): a namespace and ServiceAccount name. */
export function isIdentity(id: CallerIdentity): boolean {
  return dnsLabel.test(id.namespace) && dnsSubdomain.test(id.serviceAccount);
}
