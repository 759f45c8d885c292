/**
 * Runs the auth callout service from the operator's configuration: its own
 * NATS connection (an `auth_users` user, so the server does not call out for
 * it), the TokenReview adapter on the operator's Kubernetes credentials, and
 * the service. In NATS operator mode also the account registry (a
 * system-account connection that pushes namespace accounts) and the watch
 * that keeps their cross-namespace imports in step with the resources. A
 * refused credential or an unreadable key file stops the operator at start-up.
 */
import { readFileSync } from 'node:fs';
import type * as k8s from '@kubernetes/client-node';
import { fromCurveSeed, fromSeed } from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.ts';
import { connectChecked, NatsStartupError, natsSecurityOptions, type NatsAuth } from '../../common/nats-security.ts';
import type { OperatorConfig } from '../config.ts';
import { AccountRegistry } from './account-registry.ts';
import { GrantsWatch } from './grants-watch.ts';
import { startAuthCallout, type AuthCallout } from './service.ts';
import { kubeTokenReviewer } from './token-review.ts';

function readKey(file: string | undefined, variable: string): string {
  try {
    return readFileSync(file ?? '', 'utf8').trim();
  } catch (err) {
    throw new NatsStartupError(`cannot read ${variable} file ${file ?? ''}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

const keyKinds = { O: 'operator (SO…)', A: 'account (SA…)', X: 'curve (SX…)' } as const;

function seedKey(seed: string, variable: string, prefix: keyof typeof keyKinds) {
  try {
    const bytes = new TextEncoder().encode(seed);
    const kp = prefix === 'X' ? fromCurveSeed(bytes) : fromSeed(bytes);
    if (!kp.getPublicKey().startsWith(prefix)) throw new Error(`not a ${keyKinds[prefix]} key`);
    return kp;
  } catch (err) {
    throw new NatsStartupError(`${variable} does not hold a valid ${keyKinds[prefix]} seed: ${(err as Error).message}`);
  }
}

export async function startAuthCalloutFromConfig(config: OperatorConfig, kc: k8s.KubeConfig, log: Logger): Promise<AuthCallout & { close(): Promise<void> }> {
  const a = config.authCallout;
  const seed = readKey(a.issuerSeed, 'CASTELLAN_AUTH_CALLOUT_ISSUER_SEED');
  const issuer = seedKey(seed, 'CASTELLAN_AUTH_CALLOUT_ISSUER_SEED', 'A');
  const xkeySeed = a.xkeySeed === undefined ? undefined : readKey(a.xkeySeed, 'CASTELLAN_AUTH_CALLOUT_XKEY_SEED');
  if (xkeySeed !== undefined) seedKey(xkeySeed, 'CASTELLAN_AUTH_CALLOUT_XKEY_SEED', 'X');
  const connectAs = (auth: NatsAuth, name: string): Promise<NatsConnection> =>
    connectChecked(
      {
        ...natsSecurityOptions({ auth, tls: config.nats.tls }),
        servers: config.nats.urls,
        name: `${name} ${config.identity}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        pingInterval: 10_000,
        maxPingOut: 3,
      },
      { log },
    );
  const connections: NatsConnection[] = [];
  let accounts: AccountRegistry | undefined;
  let watch: GrantsWatch | undefined;
  try {
    if (a.operatorSigningSeed !== undefined) {
      const operatorSigner = seedKey(readKey(a.operatorSigningSeed, 'CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED'), 'CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED', 'O');
      const keySecret = a.accountKeySecret === undefined ? seed : readKey(a.accountKeySecret, 'CASTELLAN_AUTH_CALLOUT_ACCOUNT_KEY_SECRET');
      const sys = await connectAs({ creds: a.systemCreds }, 'castellan-accounts');
      connections.push(sys);
      accounts = new AccountRegistry({ sys, operatorSigner, signingKey: issuer.getPublicKey(), keySecret, accountPrefix: a.accountPrefix, grantsFirst: true, log });
      watch = new GrantsWatch({ kc, registry: accounts, namespaces: config.namespaces, defaultPrefix: config.nats.prefix || 'castellan', log });
      watch.start();
    }
    const nc = await connectAs(a.nats.auth, 'castellan-auth-callout');
    connections.push(nc);
    const service = startAuthCallout({
      nc,
      issuerSeed: seed,
      review: kubeTokenReviewer(kc, a.audience),
      policy: { audience: a.audience, admins: a.admins, accountPrefix: a.accountPrefix, maxTtlMs: a.maxTtl },
      ...(accounts === undefined ? {} : { accounts }),
      ...(xkeySeed === undefined ? {} : { xkeySeed }),
      log,
    });
    log.info('NATS auth callout serving', { servers: config.nats.urls.join(','), audience: a.audience, admins: a.admins, operatorMode: accounts !== undefined, encrypted: xkeySeed !== undefined });
    return {
      ...service,
      async close() {
        await service.stop();
        await watch?.stop();
        await Promise.allSettled(connections.map((c) => c.close()));
      },
    };
  } catch (err) {
    await watch?.stop();
    await Promise.allSettled(connections.map((c) => c.close()));
    throw err;
  }
}
