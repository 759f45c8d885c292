/**
 * Requests from a caller sidecar to object hosts over core NATS, with a
 * receipt: the caller asks for one (`ack` in the request meta, wire.ts), and
 * the host answers an empty message the moment it takes the request, before
 * anything of it can run (host.ts), then the reply when it is done.
 *
 * Why: a host that dies with a call in flight leaves the caller not knowing
 * whether the call ran. Without a receipt the call certainly never reached a
 * live handler (the host takes every request, and acknowledges it, before the
 * turn that may call the app; the receipt is handed to the socket before that
 * turn can start), so the router may send it elsewhere with the same request
 * id; with one it may have run, and the caller gets 504.
 *
 * One wildcard inbox subscription serves every call of the sidecar (as
 * nats.js's own request multiplexing does); each call has a token. "No
 * responders" (the server's empty 503 status message: nobody subscribed, so
 * nothing was delivered) is reported as `NotDelivered`.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

/** Nobody received the request (no subscriber, or the host died before taking it): it certainly did not run. */
export class NotDelivered extends Error {
  override readonly name = 'NotDelivered';
}

/** No reply within the caller's time (the request may or may not have run). */
export class CallTimeout extends Error {
  override readonly name = 'CallTimeout';
}

export interface Call {
  /** The host's reply. */
  readonly reply: Promise<Uint8Array>;
  /** Whether the host has acknowledged taking the request. */
  received(): boolean;
  /** Stops waiting: the reply rejects with `err` (late messages are dropped). */
  abandon(err: Error): void;
}

interface Pending {
  acked: boolean;
  resolve: (data: Uint8Array) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class CallChannel {
  private readonly nc: NatsConnection;
  private readonly prefix = createInbox();
  private readonly pending = new Map<string, Pending>();
  private sub: Subscription | undefined;
  private seq = 0;

  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  /** Publishes `data` to `subject` with a reply inbox; the reply rejects with CallTimeout after `timeoutMs`. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Call {
    this.sub ??= this.nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => this.onMessage(err, msg) });
    const token = (++this.seq).toString(36);
    let entry!: Pending;
    const reply = new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(token, new CallTimeout(`no reply from ${subject} within ${timeoutMs} ms`)), Math.max(1, Math.floor(timeoutMs)));
      entry = { acked: false, resolve, reject, timer };
    });
    this.pending.set(token, entry);
    try {
      this.nc.publish(subject, data, { reply: `${this.prefix}.${token}` });
    } catch (err) {
      this.settle(token, err instanceof Error ? err : new Error(String(err)));
    }
    return {
      reply,
      received: () => entry.acked,
      abandon: (err) => this.settle(token, err),
    };
  }

  private onMessage(err: Error | null, msg: Msg): void {
    if (err !== null) {
      // The inbox subscription failed (permissions, connection closed): nothing more will be answered on it.
      for (const token of [...this.pending.keys()]) this.settle(token, err);
      this.sub = undefined;
      return;
    }
    const token = msg.subject.slice(this.prefix.length + 1);
    const p = this.pending.get(token);
    if (p === undefined) return; // late: the call was settled already
    if (msg.data.length > 0) {
      this.pending.delete(token);
      clearTimeout(p.timer);
      p.resolve(msg.data);
    } else if (msg.headers?.code === 503) {
      this.settle(token, new NotDelivered('no responders'));
    } else {
      p.acked = true;
    }
  }

  private settle(token: string, err: Error): void {
    const p = this.pending.get(token);
    if (p === undefined) return;
    this.pending.delete(token);
    clearTimeout(p.timer);
    p.reject(err);
  }
}
