/**
 * The Castellan NATS auth callout service (docs/security.md): nats-server
 * sends every connecting client's CONNECT to `$SYS.REQ.USER.AUTH` in the
 * callout account; this answers with a user JWT for the namespace the
 * client's Kubernetes ServiceAccount token proves, or with an error, which
 * makes the server refuse the connection. Every operator replica serves it
 * (one queue group), leader or not: connecting must not wait for an election.
 *
 * Correctness rests on: the token is checked by the API server (TokenReview,
 * the adapter in token-review.ts); the namespace, account, permissions and
 * expiry are decided by decision.ts alone; the response is signed with the
 * issuer key the server trusts (auth_callout.issuer), and addressed to the
 * one server and user nkey of the request, so it cannot be replayed for
 * another connection.
 *
 * In NATS operator mode (`accounts` given, docs/security.md "Operator mode")
 * the namespace's account is created or updated first (account-registry.ts)
 * and the user is issued by the callout's key as a signing key of that
 * account (`issuer_account`), which is how the server places it there.
 */
import { decode, encodeAuthorizationResponse, encodeUser, fromSeed, type AuthorizationRequest, type KeyPair } from '@nats-io/jwt';
import { fromCurveSeed } from '@nats-io/nkeys';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import type { AccountRegistry } from './account-registry.ts';
import { decide, type CalloutPolicy, type Grant } from './decision.ts';
import type { TokenReviewer } from './token-review.ts';

export const authRequestSubject = '$SYS.REQ.USER.AUTH';
/** Header of an encrypted request: the server's curve public key (nats-server AuthRequestXKeyHeader). */
export const xkeyHeader = 'Nats-Server-Xkey';

export interface AuthCalloutOptions {
  /** A connection as one of the server's `auth_users`, in the callout account. */
  nc: NatsConnection;
  /** The issuer account's nkey seed (`SA…`): its public key is the server's `auth_callout.issuer`. */
  issuerSeed: string;
  review: TokenReviewer;
  policy: CalloutPolicy;
  /** NATS operator mode: the namespace accounts (absent: accounts are in the server configuration). */
  accounts?: AccountRegistry;
  /**
   * The callout's curve key seed (`SX…`) when the server encrypts requests to it (`auth_callout.xkey`, or
   * `authorization.xkey` of the callout account): requests are opened and responses sealed with it.
   */
  xkeySeed?: string;
  log: Logger;
  now?: () => number;
}

export interface AuthCallout {
  /** Connections granted and refused so far (for metrics and tests). */
  counts(): { granted: number; refused: number };
  stop(): Promise<void>;
}

export function startAuthCallout(opts: AuthCalloutOptions): AuthCallout {
  const issuer: KeyPair = fromSeed(new TextEncoder().encode(opts.issuerSeed.trim()));
  const xkey = opts.xkeySeed === undefined ? undefined : fromCurveSeed(new TextEncoder().encode(opts.xkeySeed.trim()));
  const now = opts.now ?? Date.now;
  let granted = 0;
  let refused = 0;
  const sub: Subscription = opts.nc.subscribe(authRequestSubject, {
    queue: 'castellan-auth-callout',
    callback: (err, msg) => {
      if (err !== null) {
        opts.log.error('auth callout subscription failed', { error: describeError(err) });
        return;
      }
      void answer(msg).catch((e: unknown) => opts.log.error('auth callout could not answer', { error: describeError(e) }));
    },
  });

  async function answer(msg: Msg): Promise<void> {
    // An encrypted request names the server's curve key; the answer is sealed for it.
    const serverXkey = msg.headers?.get(xkeyHeader) ?? '';
    let req: AuthorizationRequest;
    try {
      let text = msg.string();
      if (serverXkey !== '') {
        if (xkey === undefined) throw new Error(`the request is encrypted (${xkeyHeader}) but the callout has no xkey seed (CASTELLAN_AUTH_CALLOUT_XKEY_SEED)`);
        const opened = xkey.open(msg.data, serverXkey);
        if (opened === null) throw new Error('the encrypted request does not open with the callout\'s xkey (is the server configured with its public key?)');
        text = new TextDecoder().decode(opened);
      }
      req = decode<AuthorizationRequest>(text).nats as AuthorizationRequest;
    } catch (err) {
      opts.log.error('auth callout request cannot be read', { error: describeError(err) });
      return;
    }
    const userNkey = req.user_nkey;
    const server = req.server_id?.id;
    if (typeof userNkey !== 'string' || typeof server !== 'string') {
      opts.log.warn('auth callout request without user nkey or server id');
      return;
    }
    const token = req.connect_opts?.pass ?? req.connect_opts?.auth_token ?? '';
    const requested = req.connect_opts?.user ?? '';
    const client = { name: req.client_info?.name, host: req.client_info?.host };
    let data: { jwt: string } | { error: string };
    if (token === '') {
      refused++;
      data = { error: 'no Kubernetes ServiceAccount token presented (CASTELLAN_NATS_SA_TOKEN)' };
      opts.log.info('NATS connection refused', { ...client, reason: data.error });
    } else {
      const decision = decide(await opts.review(token), token, requested, opts.policy, now());
      if (decision.ok) {
        data = await grant(decision, userNkey);
        if ('jwt' in data) {
          granted++;
          opts.log.info('NATS connection granted', { ...client, user: decision.user, namespace: decision.namespace, account: decision.account, exp: decision.exp });
        } else {
          refused++;
          opts.log.error('NATS connection refused: its namespace account could not be created', { ...client, namespace: decision.namespace, reason: data.error });
        }
      } else {
        refused++;
        data = { error: decision.reason };
        opts.log.info('NATS connection refused', { ...client, reason: decision.reason });
      }
    }
    const response = await encodeAuthorizationResponse(userNkey, server, issuer, data, {});
    msg.respond(serverXkey === '' || xkey === undefined ? response : xkey.seal(new TextEncoder().encode(response), serverXkey));
  }

  async function grant(decision: Grant, userNkey: string): Promise<{ jwt: string } | { error: string }> {
    const accounts = opts.accounts;
    if (accounts === undefined) return { jwt: await encodeUser(decision.user, userNkey, issuer, decision.permissions, { aud: decision.account, exp: decision.exp }) };
    try {
      await accounts.ensure(decision.namespace);
    } catch (err) {
      return { error: `NATS account of namespace "${decision.namespace}" unavailable: ${describeError(err)}` };
    }
    return { jwt: await encodeUser(decision.user, userNkey, accounts.accountOf(decision.namespace), decision.permissions, { exp: decision.exp, signer: issuer }) };
  }

  return {
    counts: () => ({ granted, refused }),
    async stop() {
      sub.unsubscribe();
      await sub.closed;
    },
  };
}
