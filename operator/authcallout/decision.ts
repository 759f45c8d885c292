/**
 * The auth callout's decisions, pure (they take `now`, do no I/O):
 *
 * - which Kubernetes identity a reviewed ServiceAccount token proves, and
 *   which namespace the connection may act for: its own, whatever the client
 *   asked for (a forged POD_NAMESPACE is refused here), or any namespace for
 *   the admins (the operator's own ServiceAccount);
 * - the NATS account and permissions of that connection. Isolation is by
 *   account first: each namespace is its own NATS account, so its streams,
 *   JetStream API, subjects and `_INBOX.` replies are invisible to every other
 *   namespace's connections, whatever subject names they try. Inside it,
 *   permissions allow only the namespace's Castellan subjects, whose third
 *   token is the namespace for every name Castellan uses
 *   (`<prefix>.obj|rpc|q|qrpc|qwake.<ns>.…`, sidecar/objects/subjects.ts,
 *   sidecar/queues/names.ts), the account's JetStream API and inbox replies;
 *   calls (`rpc`, `qrpc`) only under the connection's own identity, which is
 *   how a target host knows its caller (common/access.ts);
 * - how long the connection may live: no longer than the token (NATS closes
 *   the connection when the user JWT expires; the client reconnects with the
 *   rotated token, and a revoked one is refused then).
 */
import { identityTokens } from '../../common/access.ts';

export interface ReviewedToken {
  authenticated: boolean;
  /** `system:serviceaccount:<namespace>:<name>` when authenticated. */
  username?: string;
  /** Why the API server refused the token. */
  error?: string;
  /** The audiences the token was accepted for. */
  audiences?: string[];
}

export interface CalloutPolicy {
  /** The audience the projected token must carry (default `castellan`). */
  audience: string;
  /** Usernames that may ask for any namespace (the operator's ServiceAccount). */
  admins: string[];
  /** NATS account of a namespace: `accountPrefix + namespace`. */
  accountPrefix: string;
  /** Longest life of one connection's user JWT, ms (0 = as long as the token). */
  maxTtlMs: number;
}

export interface Grant {
  ok: true;
  namespace: string;
  account: string;
  /** Name of the user JWT (the ServiceAccount). */
  user: string;
  /** Expiry, epoch seconds. */
  exp: number;
  permissions: { pub: { allow: string[] }; sub: { allow: string[] }; resp: { max: number; ttl: number } };
}

export interface Refusal {
  ok: false;
  reason: string;
}

const saUser = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The payload of a JWT, unverified (the API server verified the token; only `exp` is read). */
export function unverifiedClaims(token: string): { exp?: number } {
  const part = token.split('.')[1];
  if (part === undefined) return {};
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null ? (v as { exp?: number }) : {};
  } catch {
    return {};
  }
}

/**
 * Subject kinds a namespace's connections use freely: `<prefix>.<kind>.<ns>.…`
 * (sidecar/objects/subjects.ts, sidecar/queues/names.ts, sidecar/listing/layout.ts).
 * A new kind must be added here (the isolation test fails otherwise).
 */
export const namespaceSubjectKinds = ['obj', 'q', 'qwake'] as const;
/**
 * Call kinds: `<prefix>.<kind>.<targetNs>.<name>.<pod>.<callerNs>.<callerSa>`
 * (common/access.ts). A connection may publish them only under its own
 * identity; the target namespace is any, because the account still confines
 * them: they reach another namespace only through a service import the NATS
 * administrator configured (docs/security.md §3), and its hosts then check
 * the resource's `spec.access.callers`.
 */
export const callSubjectKinds = ['rpc', 'qrpc'] as const;

/** Response permission: a host may answer the requests it received, also from other accounts (`_R_.…` replies of service imports). */
export const responsePermission = { max: 1, ttl: 120_000_000_000 } as const;

/**
 * Subjects a connection acting for `namespace` as ServiceAccount
 * `serviceAccount` (of that namespace; an admin acting for it counts as one
 * of its members: it holds the whole account anyway) may publish to and
 * subscribe to.
 */
export function namespacePermissions(namespace: string, serviceAccount: string): Grant['permissions'] {
  const self = identityTokens({ namespace, serviceAccount });
  return {
    pub: {
      allow: [
        ...namespaceSubjectKinds.map((k) => `*.${k}.${namespace}.>`),
        ...callSubjectKinds.map((k) => `*.${k}.*.*.*.${self}`),
        '$JS.API.>',
        '_INBOX.>',
        '$JS.ACK.>',
        '$JS.FC.>',
      ],
    },
    sub: { allow: [`*.*.${namespace}.>`, '_INBOX.>'] },
    resp: { ...responsePermission },
  };
}

/**
 * Decides one connection: `requested` is the namespace the client asked for
 * (its NATS user name; empty = its own), `token` the raw ServiceAccount token
 * (for its expiry), `review` the API server's TokenReview answer.
 */
export function decide(review: ReviewedToken, token: string, requested: string, policy: CalloutPolicy, nowMs: number): Grant | Refusal {
  if (!review.authenticated) return { ok: false, reason: `ServiceAccount token refused by the API server${review.error ? `: ${review.error}` : ''}` };
  if (review.audiences !== undefined && !review.audiences.includes(policy.audience)) {
    return { ok: false, reason: `token is not for audience "${policy.audience}"` };
  }
  const m = saUser.exec(review.username ?? '');
  if (m === null) return { ok: false, reason: `"${review.username ?? ''}" is not a ServiceAccount` };
  const own = m[1] as string;
  const serviceAccount = m[3] as string;
  const admin = policy.admins.includes(review.username as string);
  const namespace = requested === '' ? own : requested;
  if (!dnsLabel.test(namespace)) return { ok: false, reason: `"${namespace}" is not a namespace name` };
  if (namespace !== own && !admin) return { ok: false, reason: `a token of namespace "${own}" cannot act for namespace "${namespace}"` };
  const tokenExp = unverifiedClaims(token).exp;
  const nowS = Math.floor(nowMs / 1000);
  if (typeof tokenExp !== 'number' || tokenExp <= nowS) return { ok: false, reason: 'ServiceAccount token has expired or has no expiry' };
  const exp = policy.maxTtlMs > 0 ? Math.min(tokenExp, Math.ceil((nowMs + policy.maxTtlMs) / 1000)) : tokenExp;
  return { ok: true, namespace, account: `${policy.accountPrefix}${namespace}`, user: review.username as string, exp, permissions: namespacePermissions(namespace, serviceAccount) };
}
