/**
 * The sidecar's NATS connection: reconnects forever (a sidecar outlives NATS
 * restarts), and tracks whether it is connected right now for /readyz.
 * Credentials and TLS come from common/nats-security.ts: a server that is not
 * up yet is waited for, a refused credential or certificate stops the start.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../common/logger.ts';
import { connectChecked, natsSecurityOptions, type NatsSecurity } from '../common/nats-security.ts';

export interface NatsLink {
  nc: NatsConnection;
  connected(): boolean;
}

export async function connectNats(urls: string[], name: string, log: Logger, security?: Partial<NatsSecurity>, namespace?: string): Promise<NatsLink> {
  const nc = await connectChecked(
    {
      ...natsSecurityOptions(security, namespace === undefined ? {} : { namespace }),
      servers: urls,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      pingInterval: 5_000,
      maxPingOut: 2,
      // Request errors without async stack traces: building them cost ~half the CPU of a request (bench/RESULTS.md).
      noAsyncTraces: true,
    },
    { log },
  );
  let up = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        up = false;
        log.warn('NATS disconnected', { server: s.server });
      } else if (s.type === 'reconnect') {
        up = true;
        log.info('NATS reconnected', { server: s.server });
      } else if (s.type === 'error') {
        log.warn('NATS error', { error: describeError(s.error) });
      }
    }
  })();
  log.info('NATS connected', { server: nc.getServer() });
  return { nc, connected: () => up && !nc.isClosed() };
}
