/**
 * The operator's NATS connections, one per distinct server list (the
 * operator's CASTELLAN_NATS_URL, or a resource's spec.nats.urls). A first
 * connect that fails is reported to the caller at once (the reconcile is
 * retried with backoff) instead of blocking a worker; an established
 * connection reconnects forever.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';

export class NatsPool {
  private readonly conns = new Map<string, Promise<NatsConnection>>();
  private readonly log: Logger;
  private readonly name: string;

  constructor(name: string, log: Logger) {
    this.name = name;
    this.log = log;
  }

  get(urls: readonly string[]): Promise<NatsConnection> {
    const key = [...urls].sort().join(',');
    let p = this.conns.get(key);
    if (p === undefined) {
      p = this.open(urls);
      this.conns.set(key, p);
      p.then(
        (nc) => {
          void nc.closed().then(() => {
            if (this.conns.get(key) === p) this.conns.delete(key);
          });
        },
        () => {
          if (this.conns.get(key) === p) this.conns.delete(key);
        },
      );
    }
    return p;
  }

  private async open(urls: readonly string[]): Promise<NatsConnection> {
    const nc = await connect({
      servers: [...urls],
      name: this.name,
      timeout: 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      pingInterval: 10_000,
      maxPingOut: 3,
    });
    this.log.info('NATS connected', { servers: urls.join(','), server: nc.getServer() });
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.log.warn('NATS disconnected', { server: s.server });
        else if (s.type === 'reconnect') this.log.info('NATS reconnected', { server: s.server });
        else if (s.type === 'error') this.log.warn('NATS error', { error: describeError(s.error) });
      }
    })();
    return nc;
  }

  /** Whether every open connection is connected right now (for /readyz details). */
  async states(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [key, p] of this.conns) {
      try {
        const nc = await Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100))]);
        out[key] = nc === undefined ? 'connecting' : nc.isClosed() ? 'closed' : 'connected';
      } catch (err) {
        out[key] = describeError(err);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.allSettled(all.map(async (p) => (await p).close()));
  }
}
