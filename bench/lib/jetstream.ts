/**
 * Raw JetStream baselines, driven by the benchmark's own Node client (the
 * same @nats-io client the sidecar uses): an R3 file stream (the servers run
 * `sync_interval: always`, so every ack is after fsync, as for Castellan's
 * own streams) and an R3 work-queue stream with a durable pull consumer.
 */
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export interface RawStream {
  js: JetStreamClient;
  jsm: JetStreamManager;
  name: string;
  subject: string;
  /** Name of the server leading the stream. */
  leader(): Promise<string | undefined>;
  remove(): Promise<void>;
}

export async function rawStream(nc: NatsConnection, name: string, opts: { workQueue?: boolean } = {}): Promise<RawStream> {
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const subject = `bench.raw.${name.toLowerCase()}.>`;
  await jsm.streams.delete(name).catch(() => false);
  await jsm.streams.add({
    name,
    subjects: [subject],
    num_replicas: 3,
    storage: StorageType.File,
    retention: opts.workQueue === true ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    max_msgs_per_subject: opts.workQueue === true ? -1 : 1,
  });
  if (opts.workQueue === true) {
    await jsm.consumers.add(name, { durable_name: 'bench', ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000, max_ack_pending: 10_000 });
  }
  return {
    js: jetstream(nc, { timeout: 10_000 }),
    jsm,
    name,
    subject: subject.slice(0, -2),
    async leader() {
      return (await jsm.streams.info(name)).cluster?.leader;
    },
    async remove() {
      await jsm.streams.delete(name).catch(() => false);
    },
  };
}
