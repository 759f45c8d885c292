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
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
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
  private jsmP: Promise<JetStreamManager> | undefined;

  constructor(nc: NatsConnection, router: Router, metrics: StorageMetrics, opts: DispatcherOptions, log: Logger) {
    this.nc = nc;
    this.router = router;
    this.metrics = metrics;
    this.opts = opts;
    this.log = log;
  }

  async start(): Promise<void> {
    await this.ensureConsumer();
    const first = await this.subscribe();
    this.loop = this.run(first);
    this.log.info('alarm dispatcher started', { cls: this.opts.cls, consumer: ALARM_CONSUMER });
  }

  /** Creates (or updates) the class's shared durable consumer. */
  private async ensureConsumer(): Promise<void> {
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
  }

  private async subscribe(): Promise<ConsumerMessages> {
    const js = jetstream(this.nc, { timeout: 10_000 });
    const consumer = await js.consumers.get(this.opts.names.stream, ALARM_CONSUMER);
    const msgs = await consumer.consume({ max_messages: this.opts.maxConcurrent });
    this.messages = msgs;
    void this.watch(msgs);
    return msgs;
  }

  /**
   * The client keeps pulling from a consumer that was deleted (and recovers
   * once it exists again): re-create it when told it is gone.
   */
  private async watch(msgs: ConsumerMessages): Promise<void> {
    let last = 0;
    try {
      for await (const s of msgs.status()) {
        if (this.stopped) break;
        if (s.type !== 'consumer_deleted' && s.type !== 'consumer_not_found') continue;
        if (performance.now() - last < 1_000) continue;
        last = performance.now();
        this.log.warn('alarm consumer is gone; re-creating it', { event: s.type });
        await this.ensureConsumer().catch((err: unknown) => {
          this.log.warn('re-creating the alarm consumer failed; will retry', { error: describeError(err) });
        });
      }
    } catch (err) {
      if (!this.stopped) this.log.debug('alarm consumer status stream ended', { error: describeError(err) });
    }
  }

  /** Delivers until stopped; if the subscription ends (consumer lost, say), re-creates it and goes on. */
  private async run(first: ConsumerMessages): Promise<void> {
    let msgs: ConsumerMessages | undefined = first;
    while (!this.stopped) {
      try {
        msgs ??= await this.subscribe();
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
      } catch (err) {
        if (!this.stopped) this.log.warn('alarm consumer interrupted; resubscribing', { error: describeError(err) });
      }
      msgs = undefined;
      if (this.stopped) break;
      await new Promise((r) => setTimeout(r, 1_000));
      try {
        await this.ensureConsumer();
      } catch (err) {
        this.log.warn('re-creating the alarm consumer failed; will retry', { error: describeError(err) });
      }
    }
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
      this.forget(m);
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
      this.forget(m);
    }
  }

  /**
   * Removes a handled fired alarm from the stream (only it and older ones on
   * its subject: a newer firing of the same object stays), so a re-created
   * consumer does not deliver it again.
   */
  private forget(m: JsMsg): void {
    void (async () => {
      this.jsmP ??= jetstreamManager(this.nc, { timeout: 10_000, checkAPI: false });
      const jsm = await this.jsmP;
      await jsm.streams.purge(this.opts.names.stream, { filter: m.subject, seq: m.seq + 1 });
    })().catch((err: unknown) => {
      this.jsmP = undefined;
      this.log.debug('removing a handled alarm failed (harmless)', { error: describeError(err) });
    });
  }

  /** Stops taking alarms; in-flight deliveries finish (or are redelivered elsewhere). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.messages?.stop();
    await Promise.race([Promise.all([...this.inflight, this.loop]), new Promise((r) => setTimeout(r, 2_000).unref())]);
  }
}
