/**
 * Runs the auth callout service from the operator's configuration: its own
 * NATS connection (an `auth_users` user, so the server does not call out for
 * it), the TokenReview adapter on the operator's Kubernetes credentials, and
 * the service. A refused credential or an unreadable issuer seed stops the
 * operator at start-up.
 */
import { readFileSync } from 'node:fs';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../../common/logger.ts';
import { connectChecked, NatsStartupError, natsSecurityOptions } from '../../common/nats-security.ts';
import type { OperatorConfig } from '../config.ts';
import { startAuthCallout, type AuthCallout } from './service.ts';
import { kubeTokenReviewer } from './token-review.ts';

export async function startAuthCalloutFromConfig(config: OperatorConfig, kc: k8s.KubeConfig, log: Logger): Promise<AuthCallout & { close(): Promise<void> }> {
  const a = config.authCallout;
  let seed: string;
  try {
    seed = readFileSync(a.issuerSeed ?? '', 'utf8').trim();
  } catch (err) {
    throw new NatsStartupError(`cannot read CASTELLAN_AUTH_CALLOUT_ISSUER_SEED file ${a.issuerSeed ?? ''}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const nc = await connectChecked(
    {
      ...natsSecurityOptions({ auth: a.nats.auth, tls: config.nats.tls }),
      servers: config.nats.urls,
      name: `castellan-auth-callout ${config.identity}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      pingInterval: 10_000,
      maxPingOut: 3,
    },
    { log },
  );
  const service = startAuthCallout({
    nc,
    issuerSeed: seed,
    review: kubeTokenReviewer(kc, a.audience),
    policy: { audience: a.audience, admins: a.admins, accountPrefix: a.accountPrefix, maxTtlMs: a.maxTtl },
    log,
  });
  log.info('NATS auth callout serving', { servers: config.nats.urls.join(','), audience: a.audience, admins: a.admins });
  return {
    ...service,
    async close() {
      await service.stop();
      await nc.close();
    },
  };
}
