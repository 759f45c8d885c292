/**
 * The in-memory, ordered view of one class's object index, kept by a sidecar
 * that serves listings of the class (adapter: reads JetStream).
 *
 * It follows the class stream's `idx.*` subjects (layout.ts) with an ordered
 * consumer that starts at the last message of every subject and then gets
 * every new one: the view is the index, in UTF-8 byte order (sorted-map.ts),
 * so a page is a seek and a walk in memory, whatever the number of objects
 * and keys; no storage key is ever read. Building it reads one message per
 * object once (see docs/objects.md for the cost); it is dropped after a while
 * without listings.
 *
 * Freshness: `sync()` asks the server how far the consumer has delivered and
 * waits until the view has applied that much, so a listing reflects every
 * write acknowledged before the listing began (read-your-writes across pods).
 */
import { DeliverPolicy, jetstream, type Consumer, type ConsumerMessages } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Errors } from '../../common/errors.ts';
import { describeError, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import type { ClassNames } from '../objects/subjects.ts';
import { decodeSummary, indexNames, OP_HEADER, type Summary } from './layout.ts';
import { SortedMap } from './sorted-map.ts';

/** A summary as the view holds it: with the stream sequence of its index message. */
export interface IndexEntry extends Summary {
  seq: number;
}

export class IndexView {
  readonly cls: string;
  private readonly nc: NatsConnection;
  private readonly names: ClassNames;
  private readonly log: Logger;
  readonly map = new SortedMap<IndexEntry>();
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private received = { consumer: '', seq: 0 };
  private totalBytes = 0;
  private stopped = false;
  lastUsed = performance.now();
  private started: Promise<void> | undefined;

  constructor(nc: NatsConnection, cls: string, names: ClassNames, log: Logger) {
    this.nc = nc;
    this.cls = cls;
    this.names = names;
    this.log = log;
  }

  get objects(): number {
    return this.map.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  start(): Promise<void> {
    this.started ??= this.open();
    return this.started;
  }

  private async open(): Promise<void> {
    const js = jetstream(this.nc, { timeout: 10_000 });
    const idx = indexNames(this.names);
    this.consumer = await js.consumers.get(this.names.stream, { filter_subjects: [idx.all], deliver_policy: DeliverPolicy.LastPerSubject });
    this.messages = await this.consumer.consume({ max_messages: 4096 });
    const msgs = this.messages;
    void (async () => {
      try {
        for await (const m of msgs) {
          const encId = m.subject.startsWith(idx.prefix) ? m.subject.slice(idx.prefix.length) : '';
          if (encId !== '') {
            const key = Buffer.from(encId, 'base64url').toString('latin1');
            const s = decodeSummary(m.data, m.headers?.get(OP_HEADER));
            const prev = this.map.get(key);
            if (prev !== undefined) this.totalBytes -= prev.bytes;
            if (s === undefined) this.map.delete(key);
            else {
              this.map.set(key, { ...s, seq: m.seq });
              this.totalBytes += s.bytes;
            }
          }
          this.received = { consumer: m.info.consumer, seq: m.info.deliverySequence };
        }
      } catch (err) {
        if (!this.stopped) this.log.warn('object index view stopped', { cls: this.cls, error: describeError(err) });
      }
    })();
  }

  /** Waits until the view holds everything stored before this call (or fails after `timeoutMs`). */
  async sync(timeoutMs: number): Promise<void> {
    await this.start();
    this.lastUsed = performance.now();
    const deadline = performance.now() + timeoutMs;
    const c = this.consumer!;
    let info = await c.info(false);
    for (let i = 0; ; i++) {
      const target = info.delivered.consumer_seq + info.num_pending;
      const mine = this.received.consumer === info.name ? this.received.seq : 0;
      if (mine >= target) return;
      if (performance.now() > deadline) {
        throw Errors.unavailable(`The object index of class "${this.cls}" is still loading (${this.map.size} objects so far); retry.`, 'INDEX_LOADING');
      }
      await sleep(Math.min(50, 2 + i * 2));
      // Re-ask only when the view caught up with what was pending at the last answer.
      if (this.received.consumer !== info.name || mine >= info.delivered.consumer_seq) info = await c.info(false);
    }
  }

  stop(): void {
    this.stopped = true;
    this.messages?.stop();
  }
}
