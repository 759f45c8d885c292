/**
 * Alarm delivery (SPEC §2.2), run by every object host of a class.
 *
 * Setting an alarm writes a JetStream message schedule (`Nats-Schedule: @at`)
 * on `…alarm.<encId>` in the class stream (sidecar/storage/storage.ts). When
 * due, the NATS server itself publishes the alarm to `…fire.<encId>` — no
 * timer lives in any sidecar, so an alarm survives the death of the host that
 * set it. One durable pull consumer per class (`alarms`) over `…fire.*` is
 * shared by all hosts of the class: each fired alarm goes to one live host,
 * which delivers it through the Router (so it reaches the object's owner,
 * activating it wherever placement puts it) as `POST /.castellan/alarm`.
 * 2xx → ack. Non-2xx, timeout or unavailability → nak with the backoff delay
 * (backoff.ts; the JetStream delivery count is the retry count); after the
 * last retry → term. A host that dies mid-delivery never acks: JetStream
 * redelivers after ack_wait to another host. At-least-once.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import type { Router } from '../objects/router.ts';
import { decodeId, type ClassNames } from '../objects/subjects.ts';
import type { StorageMetrics } from '../storage/metrics.ts';
import { afterFailure, type AlarmRetryPolicy } from './backoff.ts';

export const ALARM_CONSUMER = 'alarms';
export const ALARM_PATH = '/.castellan/alarm';

export interface DispatcherOptions {
  cls: string;
  names: ClassNames;
  policy: AlarmRetryPolicy;
  /** Longest an alarm delivery may take (the router's request timeout, ms). */
  deliveryTimeoutMs: number;
  /** Alarms delivered at the same time by this host. */
  maxConcurrent: number;
}

export class AlarmDispatcher {
  private readonly nc: NatsConnection;
  private readonly router: Router;
  private readonly opts: DispatcherOptions;
  private readonly metrics: StorageMetrics;
  private readonly log: Logger;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private readonly inflight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;

  constructor(nc: NatsConnection, router: Router, metrics: StorageMetrics, opts: DispatcherOptions, log: Logger) {
    this.nc = nc;
    this.router = router;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
  }

  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.nc, { timeout: 15_000, checkAPI: false });
    const ackWait = nanos(this.opts.deliveryTimeoutMs + 10_000);
    const config = {
      durable_name: ALARM_CONSUMER,
      filter_subject: this.opts.names.fires,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ackWait,
      max_deliver: this.opts.policy.maxRetries + 1,
      max_ack_pending: 10_000,
      description: `Castellan alarms of class ${this.opts.cls}`,
    };
    try {
      const info = await jsm.consumers.info(this.opts.names.stream, ALARM_CONSUMER);
      if (info.config.ack_wait !== ackWait || info.config.max_deliver !== config.max_deliver) {
        await jsm.consumers.update(this.opts.names.stream, ALARM_CONSUMER, { ack_wait: ackWait, max_deliver: config.max_deliver });
      }
    } catch (err) {
      if (!/not found/i.test(describeError(err))) throw err;
      try {
        await jsm.consumers.add(this.opts.names.stream, config);
      } catch (e) {
        if (!/already (in use|exists)/i.test(describeError(e))) throw e;
      }
    }
    const js = jetstream(this.nc, { timeout: 10_000 });
    const consumer = await js.consumers.get(this.opts.names.stream, ALARM_CONSUMER);
    this.messages = await consumer.consume({ max_messages: this.opts.maxConcurrent });
    const msgs = this.messages;
    this.loop = (async () => {
      for await (const m of msgs) {
        if (this.stopped) {
          m.nak();
          continue;
        }
        const p = this.deliver(m).catch((err: unknown) => {
          this.log.error('alarm delivery failed unexpectedly', { error: describeError(err) });
        });
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
        while (this.inflight.size >= this.opts.maxConcurrent) await Promise.race(this.inflight);
      }
    })().catch((err: unknown) => {
      if (!this.stopped) this.log.error('alarm consumer stopped', { error: describeError(err) });
    });
    this.log.info('alarm dispatcher started', { cls: this.opts.cls, consumer: ALARM_CONSUMER });
  }

  private async deliver(m: JsMsg): Promise<void> {
    const prefix = this.opts.names.fire('');
    const encId = m.subject.startsWith(prefix) ? m.subject.slice(prefix.length) : '';
    if (encId === '') {
      m.term('not an alarm subject');
      return;
    }
    const id = decodeId(encId);
    const retryCount = Math.max(0, m.info.deliveryCount - 1);
    if (retryCount > 0) this.metrics.alarmRetries.inc({ class: this.opts.cls });
    const keepAlive = setInterval(() => m.working(), Math.max(1_000, Math.min(10_000, this.opts.deliveryTimeoutMs / 3)));
    let ok = false;
    let why: string;
    try {
      let at: unknown;
      try {
        at = (JSON.parse(new TextDecoder().decode(m.data)) as { at?: unknown }).at;
      } catch {
        at = undefined;
      }
      const res = await this.router.invoke({
        cls: this.opts.cls,
        id,
        method: 'POST',
        path: ALARM_PATH,
        query: '',
        headers: [
          ['content-type', 'application/json'],
          ['castellan-alarm-retry-count', String(retryCount)],
        ],
        body: new TextEncoder().encode(JSON.stringify({ at, retryCount })),
        rid: `alarm-${m.seq}-${m.info.deliveryCount}`,
      });
      ok = res.status >= 200 && res.status < 300;
      why = `app answered ${res.status}`;
    } catch (err) {
      why = describeError(err);
    } finally {
      clearInterval(keepAlive);
    }
    if (ok) {
      m.ack();
      this.metrics.alarmFires.inc({ class: this.opts.cls, outcome: 'ok' });
      this.log.debug('alarm delivered', { id, retryCount });
      return;
    }
    const next = afterFailure(retryCount, this.opts.policy);
    if (next.retry) {
      this.metrics.alarmFires.inc({ class: this.opts.cls, outcome: 'failed' });
      this.log.info('alarm delivery failed; retrying', { id, retryCount, delayMs: next.delayMs, why });
      m.nak(next.delayMs);
    } else {
      this.metrics.alarmFires.inc({ class: this.opts.cls, outcome: 'gave_up' });
      this.log.warn('alarm delivery failed after the last retry; dropping it', { id, retryCount, why });
      m.term(`gave up after ${retryCount} retries: ${why}`);
    }
  }

  /** Stops taking alarms; in-flight deliveries finish (or are redelivered elsewhere). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.messages?.stop();
    await Promise.race([Promise.all([...this.inflight, this.loop]), new Promise((r) => setTimeout(r, 2_000).unref())]);
  }
}
