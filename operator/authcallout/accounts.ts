/**
 * NATS operator mode, pure part: what a namespace's NATS account says
 * (docs/security.md §2, "Operator mode"). No I/O, no keys: the registry
 * (account-registry.ts) signs and pushes what this decides.
 *
 * - Every namespace is its own account, created the first time one of its
 *   pods connects, so a new namespace needs no nats-server reload. JetStream
 *   is enabled without limits (the cluster's own limits apply).
 * - Users are issued by the callout's signing key, which the account lists in
 *   `signing_keys`; the server accepts a user only if its issuer is one of its
 *   account's keys, so nothing but the callout can place users in it.
 * - Cross-namespace calls (docs/security.md §3) follow the resources: when a
 *   resource of namespace T lists namespace N in `spec.access.callers`, T's
 *   account exports its call subjects (`<prefix>.rpc.T.>`, `<prefix>.qrpc.T.>`)
 *   and N's account imports them. No other account imports them, and only the
 *   operator signs account JWTs, so at the NATS level a namespace reaches
 *   exactly the namespaces that opened some resource to it; T's hosts then
 *   check the ServiceAccount against the resource's list (common/access.ts).
 *   A namespace that no resource opens to anyone exports nothing.
 */
import type { Account } from '@nats-io/jwt';

/** A resource's part in the account plan: its namespace, subject prefix and the namespaces it lets call it. */
export interface ResourceAccess {
  namespace: string;
  prefix: string;
  callers: string[];
}

/** The call subjects of `target` under `prefix`, opened to `caller`. */
export interface CallGrant {
  target: string;
  prefix: string;
  caller: string;
}

/** Every (target, prefix, caller) opened by some resource, without duplicates, in a stable order. */
export function callGrants(resources: readonly ResourceAccess[]): CallGrant[] {
  const seen = new Map<string, CallGrant>();
  for (const r of resources) {
    for (const caller of r.callers) {
      if (caller === r.namespace) continue;
      const g = { target: r.namespace, prefix: r.prefix, caller };
      seen.set(`${g.target}\u0000${g.prefix}\u0000${g.caller}`, g);
    }
  }
  return [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

/** The subjects a call grant routes: object calls and queue operations. */
export function callSubjects(target: string, prefix: string): string[] {
  return [`${prefix}.rpc.${target}.>`, `${prefix}.qrpc.${target}.>`];
}

export interface AccountInput {
  namespace: string;
  /** The callout's signing key (public), listed so its users are accepted. */
  signingKey: string;
  /** Public key of another namespace's account. */
  accountOf(namespace: string): string;
  grants: readonly CallGrant[];
}

/** The `nats` part of namespace `namespace`'s account JWT. Deterministic: equal inputs give equal claims (the registry pushes only changes). */
export function namespaceAccount(input: AccountInput): Partial<Account> {
  const { namespace } = input;
  const exported = [...new Set(input.grants.filter((g) => g.target === namespace).map((g) => g.prefix))].sort();
  const imported = input.grants.filter((g) => g.caller === namespace);
  const account: Partial<Account> = {
    signing_keys: [input.signingKey],
    limits: {
      subs: -1,
      conn: -1,
      leaf: -1,
      imports: -1,
      exports: -1,
      data: -1,
      payload: -1,
      wildcards: true,
      mem_storage: -1,
      disk_storage: -1,
      streams: -1,
      consumer: -1,
      max_ack_pending: -1,
      mem_max_stream_bytes: 0,
      disk_max_stream_bytes: 0,
      max_bytes_required: false,
    },
  };
  if (exported.length > 0) {
    account.exports = exported.flatMap((prefix) => callSubjects(namespace, prefix).map((subject) => ({ name: subject, subject, type: 'service' as const, response_type: 'Singleton' as const })));
  }
  if (imported.length > 0) {
    account.imports = imported.flatMap((g) => callSubjects(g.target, g.prefix).map((subject) => ({ name: subject, subject, account: input.accountOf(g.target), type: 'service' as const })));
  }
  return account;
}
