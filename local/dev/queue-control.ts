/**
 * Queues created and deleted at runtime in `castellan dev` (SPEC §2.5): the
 * SQS API's CreateQueue/DeleteQueue reach this dev process over NATS
 * (`<prefix>.dev.queues.<namespace>`, sidecar/sqs/lifecycle.ts). A create
 * writes the queue's JetStream assets and config record, then starts its
 * queue-host sidecars like the ones of castellan.dev.yaml and answers once
 * they are ready; a delete stops the queue's hosts and deletes its assets.
 * state.json follows both. Requests are handled one at a time.
 */
import { natsSecurityOptions, type NatsSecurity } from '../../common/nats-security.ts';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { describeError, type Logger } from '../../common/logger.ts';
import { deleteQueueAssets, ensureQueueAssets } from '../../sidecar/queues/mod.ts';
import { hostPods, type QueueSpec } from '../../sidecar/queues/spec.ts';
import { devQueueSubject, type DevQueueReply, type DevQueueRequest } from '../../sidecar/sqs/lifecycle.ts';
import type { DevQueue } from './config.ts';

export interface QueueControlHooks {
  /** Plans, starts and waits for the host sidecars of a new queue. */
  startHosts(name: string, def: DevQueue): Promise<void>;
  /** Stops and forgets the host sidecars of a queue (none is fine). */
  stopHosts(name: string): Promise<void>;
}

export interface QueueControl {
  stop(): Promise<void>;
}

function devQueueOf(spec: QueueSpec): DevQueue {
  return {
    hosts: spec.hosts,
    replicaCount: spec.replicaCount,
    visibilityTimeout: spec.visibilityTimeoutMs,
    messageRetention: spec.messageRetentionMs,
    maxMessageBytes: spec.maxMessageBytes,
    delay: spec.delayMs,
    ...(spec.deadLetter === undefined ? {} : { deadLetter: spec.deadLetter }),
  };
}

export async function startQueueControl(
  urls: string[],
  hooks: QueueControlHooks,
  log: Logger,
  opts: { prefix?: string; namespace?: string; security?: Partial<NatsSecurity> } = {},
): Promise<QueueControl> {
  const prefix = opts.prefix ?? 'castellan';
  const namespace = opts.namespace ?? 'default';
  // The same credentials and TLS as the dev sidecars (nats.auth / nats.tls), or none.
  const nc: NatsConnection = await connect({ servers: urls, name: 'castellan-dev-queue-control', maxReconnectAttempts: -1, ...natsSecurityOptions(opts.security) });
  const target = { prefix, namespace };
  let chain: Promise<unknown> = Promise.resolve();

  const run = async (req: DevQueueRequest): Promise<DevQueueReply> => {
    if (req.op === 'create') {
      const spec = req.spec;
      log.info('creating queue (SQS CreateQueue)', { queue: spec.name, hosts: spec.hosts, replicaCount: spec.replicaCount });
      await ensureQueueAssets(nc, target, spec, { pods: hostPods(spec), by: 'castellan-dev', metaReplicas: 3, log });
      await hooks.startHosts(spec.name, devQueueOf(spec));
      return { ok: true };
    }
    log.info('deleting queue (SQS DeleteQueue)', { queue: req.name });
    await hooks.stopHosts(req.name);
    await deleteQueueAssets(nc, target, req.name, { log });
    return { ok: true };
  };

  const sub = nc.subscribe(devQueueSubject(prefix, namespace), {
    callback: (err, msg) => {
      if (err !== null) {
        log.warn('queue control subscription failed', { error: describeError(err) });
        return;
      }
      let req: DevQueueRequest;
      try {
        req = JSON.parse(new TextDecoder().decode(msg.data)) as DevQueueRequest;
      } catch {
        msg.respond(JSON.stringify({ ok: false, message: 'malformed queue control request' } satisfies DevQueueReply));
        return;
      }
      chain = chain
        .then(() => run(req))
        .then(
          (reply) => msg.respond(JSON.stringify(reply)),
          (e: unknown) => {
            log.warn('queue control request failed', { op: req.op, error: describeError(e) });
            msg.respond(JSON.stringify({ ok: false, message: `castellan dev could not ${req.op} the queue: ${describeError(e)}` } satisfies DevQueueReply));
          },
        );
    },
  });
  return {
    async stop() {
      sub.unsubscribe();
      await chain.catch(() => undefined);
      await nc.close().catch(() => undefined);
    },
  };
}
