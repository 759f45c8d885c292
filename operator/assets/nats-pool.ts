/**
 * The operator's NATS connections, one per distinct server list (the
 * operator's CASTELLAN_NATS_URL, or a resource's spec.nats.urls) and, when
 * the operator authenticates through the Castellan auth callout with its
 * ServiceAccount token, per namespace too (each namespace is its own NATS
 * account then, docs/security.md). A first connect that fails is reported to
 * the caller at once (the reconcile is retried with backoff) instead of
 * blocking a worker; a refused credential or certificate is a
 * NatsStartupError; an established connection reconnects forever.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { connectChecked, natsSecurityOptions, type NatsSecurity } from '../../common/nats-security.ts';

export class NatsPool {
  private readonly conns = new Map<string, Promise<NatsConnection>>();
  private readonly log: Logger;
  private readonly name: string;
  private readonly security: Partial<NatsSecurity> | undefined;

  constructor(name: string, log: Logger, security?: Partial<NatsSecurity>) {
    this.name = name;
    this.log = log;
    this.security = security;
  }

  /** Whether connections are made per namespace (auth callout with a ServiceAccount token). */
  get perNamespace(): boolean {
    return this.security?.auth?.serviceAccountToken !== undefined;
  }

  get(urls: readonly string[], namespace?: string): Promise<NatsConnection> {
    const ns = this.perNamespace ? namespace : undefined;
    const key = `${[...urls].sort().join(',')}${ns === undefined ? '' : `#${ns}`}`;
    let p = this.conns.get(key);
    if (p === undefined) {
      p = this.open(urls, ns);
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

  private async open(urls: readonly string[], namespace: string | undefined): Promise<NatsConnection> {
    const nc = await connectChecked(
      {
        ...natsSecurityOptions(this.security, namespace === undefined ? {} : { namespace }),
        servers: [...urls],
        name: this.name,
        timeout: 5_000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        pingInterval: 10_000,
        maxPingOut: 3,
      },
      { log: this.log, waitMs: 0 },
    );
    this.log.info('NATS connected', { servers: urls.join(','), server: nc.getServer(), ...(namespace === undefined ? {} : { namespace }) });
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.log.warn('NATS disconnected', { server: s.server });
        else if (s.type === 'reconnect') this.log.info('NATS reconnected', { server: s.server });
        else if (s.type === 'error') this.log.warn('NATS error', { error: describeError(s.error) });
      }
    })();
    return nc;
  }

  /**
   * At start-up: a credential or certificate NATS refuses stops the operator
   * with a clear error (NatsStartupError); a server not reachable yet is only
   * logged (reconciles retry). Skipped per namespace (auth callout): there the
   * callout service's own connection is the start-up check.
   */
  async preflight(urls: readonly string[]): Promise<void> {
    if (this.perNamespace || urls.length === 0) return;
    try {
      await this.get(urls);
    } catch (err) {
      if ((err as { fatal?: unknown }).fatal === true) throw err;
      this.log.warn('NATS not reachable at start-up; reconciles will retry', { servers: urls.join(','), error: describeError(err) });
    }
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
