/**
 * The keys, JWTs and server configuration of a NATS in operator mode for the
 * Castellan auth callout (docs/security.md "Operator mode"), made in one
 * call: what `nsc` would make for a platform team, for tests and for trying
 * it locally. Nothing here is per namespace: namespace accounts are created
 * by the callout when their pods first connect (operator/authcallout/).
 *
 * - an operator with a signing key; the operator signs nothing else, the
 *   signing key signs every account (here SYS and AUTH, and at run time the
 *   namespace accounts);
 * - SYS, the system account, and a user of it that pushes account JWTs;
 * - AUTH, the callout account: its JWT delegates authentication to the
 *   callout (`authorization.auth_users` = the callout's own user,
 *   `allowed_accounts: ["*"]`, and an `xkey`: the servers encrypt each
 *   request, which carries a ServiceAccount token, for the callout's curve
 *   key, and the callout seals its answer); its key is the callout's issuer,
 *   and the signing key every namespace account lists;
 * - the default sentinel: a bearer user of AUTH with no permissions, which
 *   the server uses for every client that brings no JWT, so the clients
 *   (sidecars, operator) send only their namespace and ServiceAccount token,
 *   as without operator mode;
 * - the server lines: `operator`, `system_account`, a full resolver in the
 *   server's own directory, SYS and AUTH preloaded, the default sentinel, and
 *   the callout timeout.
 */
import { join } from 'node:path';
import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from '@nats-io/jwt';
import { createAccount, createCurve, createOperator, createUser } from '@nats-io/nkeys';
import type { NatsNode } from './nats-cluster.ts';

export interface NatsOperatorMode {
  /** The operator-mode lines of a server whose resolver keeps account JWTs in `resolverDir`. */
  serverConfig(resolverDir: string): string;
  /** The `config` of NatsServerSecurity: serverConfig with a resolver directory beside the server's store. */
  config(node: NatsNode): string;
  /** Creds (JWT + seed) of the callout's own connection (an `auth_users` user of AUTH). */
  calloutCreds: string;
  /** Creds of the system-account user that pushes account JWTs. */
  systemCreds: string;
  /** Seed of the AUTH account: the callout's issuer and namespace user signing key. */
  issuerSeed: string;
  /** Seed of the operator signing key, which signs namespace accounts. */
  operatorSigningSeed: string;
  /** The bearer sentinel user JWT (also the server's `default_sentinel`). */
  sentinelJwt: string;
  /** Seed of the callout's curve key: the servers encrypt callout requests for it (AUTH's `authorization.xkey`). */
  xkeySeed: string;
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export async function natsOperatorMode(opts: { calloutTimeoutSeconds?: number } = {}): Promise<NatsOperatorMode> {
  const operator = createOperator();
  const signer = createOperator();
  const sys = createAccount();
  const auth = createAccount();
  const sysUser = createUser();
  const calloutUser = createUser();
  const sentinel = createUser();
  const xkey = createCurve();

  const operatorJwt = await encodeOperator('castellan', operator, { signing_keys: [signer.getPublicKey()], system_account: sys.getPublicKey() });
  // An account JWT without limits allows nothing (0 connections): no limits but the server's.
  const limits = { subs: -1, conn: -1, leaf: -1, imports: -1, exports: -1, data: -1, payload: -1, wildcards: true };
  const sysJwt = await encodeAccount('SYS', sys.getPublicKey(), { limits }, { signer });
  const authJwt = await encodeAccount('AUTH', auth.getPublicKey(), { limits, authorization: { auth_users: [calloutUser.getPublicKey()], allowed_accounts: ['*'], xkey: xkey.getPublicKey() } }, { signer });
  const sysUserJwt = await encodeUser('castellan-accounts', sysUser, sys, { pub: { allow: ['$SYS.REQ.CLAIMS.UPDATE', '$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP'], deny: [] }, sub: { allow: ['_INBOX.>'], deny: [] } });
  const calloutJwt = await encodeUser('castellan-callout', calloutUser, auth);
  const sentinelJwt = await encodeUser('castellan-sentinel', sentinel, auth, { bearer_token: true, pub: { allow: [], deny: ['>'] }, sub: { allow: [], deny: ['>'] } });

  const serverConfig = (resolverDir: string): string =>
    [
      `operator: ${operatorJwt}`,
      `system_account: ${sys.getPublicKey()}`,
      `resolver: { type: full, dir: ${JSON.stringify(resolverDir)}, allow_delete: false, interval: "2m", timeout: "5s" }`,
      `resolver_preload: { ${sys.getPublicKey()}: ${sysJwt}, ${auth.getPublicKey()}: ${authJwt} }`,
      `default_sentinel: ${sentinelJwt}`,
      // Seconds the server waits for the callout (TokenReview, and a new namespace's account push).
      `authorization { timeout: ${opts.calloutTimeoutSeconds ?? 60} }`,
    ].join('\n');
  return {
    serverConfig,
    config: (node) => serverConfig(join(node.storeDir, '..', `resolver-${node.name}`)),
    calloutCreds: text(fmtCreds(calloutJwt, calloutUser)),
    systemCreds: text(fmtCreds(sysUserJwt, sysUser)),
    issuerSeed: text(auth.getSeed()),
    operatorSigningSeed: text(signer.getSeed()),
    sentinelJwt,
    xkeySeed: text(xkey.getSeed()),
  };
}
