/**
 * `castellan sidecar`: runs one sidecar until SIGTERM/SIGINT, then drains.
 */
import { loadSidecarConfig } from '../../sidecar/config.ts';
import { startSidecar } from '../../sidecar/sidecar.ts';
import { describeError, logger, type Logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { runUntilSignal } from '../signals.ts';
import { parseFlags } from '../usage.ts';

const help = `Usage: castellan sidecar [options]

Runs the Castellan sidecar. Every option can also be set by environment variable.

Options:
  --role ROLE        client | object-host | queue-host      (CASTELLAN_ROLE, default client)
  --port PORT        HTTP port on 127.0.0.1                  (CASTELLAN_HTTP_PORT, default 3600)
  --nats URLS        NATS servers, comma-separated           (CASTELLAN_NATS_URL, required)
  --name NAME        this pod's name                         (POD_NAME, default the hostname)
  --namespace NS     this pod's namespace                    (POD_NAMESPACE, default "default")

Durable objects (object-host role):
  --class NAME       DurableObject class served              (CASTELLAN_CLASS, required for object-host)
  --app-port PORT    the app's port on 127.0.0.1             (CASTELLAN_APP_PORT, required for object-host)
  --concurrency C    Serial | Concurrent                     (CASTELLAN_CONCURRENCY, default Serial)
  --max-queue N      requests waiting per object, then 429   (CASTELLAN_MAX_QUEUE, default 128)
  --idle-timeout D   deactivate objects idle this long       (CASTELLAN_IDLE_TIMEOUT, default 5m)
  --turn-timeout D   a request running longer marks its object stuck (CASTELLAN_TURN_TIMEOUT, default 60s)
  --lease-ttl D      host lease TTL (failover time)          (CASTELLAN_LEASE_TTL, default 1s)
  --storage-replicas N  JetStream replicas of class streams  (CASTELLAN_STORAGE_REPLICAS, default 3)

Queue hosts (queue-host role): CASTELLAN_QUEUE, CASTELLAN_QUEUE_HOSTS, CASTELLAN_QUEUE_REPLICA_COUNT,
  CASTELLAN_VISIBILITY_TIMEOUT, CASTELLAN_MESSAGE_RETENTION, CASTELLAN_MAX_MESSAGE_BYTES,
  CASTELLAN_QUEUE_DELAY, CASTELLAN_DEAD_LETTER_QUEUE, CASTELLAN_MAX_RECEIVE_COUNT (docs/queues.md)

Callers (every role):
  --request-timeout D   wait this long for an object         (CASTELLAN_REQUEST_TIMEOUT, default 30s)
  --unavailable-wait D  wait this long for a host, then 503  (CASTELLAN_UNAVAILABLE_WAIT, default 5s)
  -h, --help         show this help`;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(
    argv,
    {
      role: { type: 'string' },
      port: { type: 'string' },
      nats: { type: 'string' },
      name: { type: 'string' },
      namespace: { type: 'string' },
      class: { type: 'string' },
      'app-port': { type: 'string' },
      concurrency: { type: 'string' },
      'max-queue': { type: 'string' },
      'idle-timeout': { type: 'string' },
      'turn-timeout': { type: 'string' },
      'lease-ttl': { type: 'string' },
      'storage-replicas': { type: 'string' },
      'request-timeout': { type: 'string' },
      'unavailable-wait': { type: 'string' },
    },
    help,
  );
  if (flags === undefined) return 0;
  const v = flags.values;
  const config = loadSidecarConfig({
    role: v.role,
    podName: v.name,
    namespace: v.namespace,
    http: { port: v.port },
    nats: { urls: v.nats },
    objects: {
      class: v.class,
      appPort: v['app-port'],
      concurrency: v.concurrency,
      maxQueue: v['max-queue'],
      idleTimeout: v['idle-timeout'],
      turnTimeout: v['turn-timeout'],
      leaseTtl: v['lease-ttl'],
      streamReplicas: v['storage-replicas'],
      requestTimeout: v['request-timeout'],
      unavailableWait: v['unavailable-wait'],
    },
  });
  const log = logger('sidecar.main');
  // An unhandled rejection is a bug, but not one that may take the sidecar (and every pod request) down.
  process.on('unhandledRejection', (reason) => log.error('unhandled rejection (a bug); the sidecar stays up', { error: describeError(reason) }));
  const sidecar = await startWithRetries(() => startSidecar(config), log);
  return runUntilSignal(() => sidecar.stop(), log, 'draining');
}

/**
 * A start that fails on something transient (NATS or JetStream not answering
 * in time on a busy cluster) is tried again a few times, with backoff, before
 * the process gives up and leaves it to its supervisor. A port in use, or
 * NATS refusing our credentials or certificates (NatsStartupError), is not
 * transient.
 */
async function startWithRetries<T>(start: () => Promise<T>, log: Logger, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (attempt >= attempts || code === 'EADDRINUSE' || code === 'EACCES' || (err as { fatal?: unknown }).fatal === true) throw err;
      const waitMs = 500 * 2 ** (attempt - 1);
      log.warn('sidecar start failed; retrying', { error: describeError(err), attempt, waitMs });
      await sleep(waitMs);
    }
  }
}
