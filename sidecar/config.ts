/**
 * The sidecar's configuration: one zod schema, fed from the environment the
 * operator (or `castellan dev`) gives the pod, and from `castellan sidecar` flags.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfig, zDuration, zList, zPort, type EnvMap } from '../common/config.ts';
import { accessCallersSchema, parseAccessCallers } from '../common/access.ts';
import { natsSecurityEnv, natsSecurityShape } from '../common/nats-security.ts';

export const sidecarRoles = ['client', 'object-host', 'queue-host'] as const;
export type SidecarRole = (typeof sidecarRoles)[number];

export const sidecarConfigSchema = z
  .object({
    role: z.enum(sidecarRoles).default('client'),
    /** Stable name of this pod/process (StatefulSet pod name in a cluster). */
    podName: z.string().min(1).default(hostname()),
    namespace: z.string().min(1).default('default'),
    /** This pod's ServiceAccount: the caller identity its calls carry (common/access.ts; with the auth callout it must be the token's). */
    serviceAccount: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a ServiceAccount name').default('default'),
    /** Who may call the resource this sidecar hosts besides its own namespace (spec.access.callers, JSON in the env). */
    access: z
      .object({
        callers: z
          .union([z.string(), accessCallersSchema])
          .transform((v, ctx) => {
            if (typeof v !== 'string') return v;
            try {
              return parseAccessCallers(v);
            } catch (err) {
              ctx.addIssue({ code: 'custom', message: (err as Error).message });
              return z.NEVER;
            }
          })
          .default([]),
      })
      .prefault({}),
    http: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: zPort.default(3600),
      })
      .prefault({}),
    /** Admin listener on the pod IP (probes, metrics, preStop drain); off unless a port is given. */
    admin: z
      .object({
        host: z.string().default('0.0.0.0'),
        port: zPort.optional(),
      })
      .prefault({}),
    nats: z
      .object({
        urls: zList.pipe(z.array(z.string().regex(/^(nats|tls|ws|wss):\/\/[^\s]+$/, 'expected a nats:// URL')).min(1)),
        /** Prefix of every subject and JetStream asset this sidecar uses. */
        prefix: z.string().regex(/^[A-Za-z0-9_-]+$/).default('castellan'),
        /** Credentials and TLS (SPEC §1 CASTELLAN_NATS_CREDS … CASTELLAN_NATS_TLS_KEY; docs/security.md). */
        ...natsSecurityShape,
      }),
    /** Durable objects: caller settings (every role) and, for `object-host`, the class it hosts. */
    objects: z
      .object({
        /** The DurableObject class this object-host serves (required for object-host). */
        class: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a Kubernetes resource name').optional(),
        /** Port of the app on 127.0.0.1 (required for object-host). */
        appPort: zPort.pipe(z.number().min(1)).optional(),
        concurrency: z.enum(['Serial', 'Concurrent']).default('Serial'),
        /** Requests that may wait per object behind the running one (Serial); beyond → 429. */
        maxQueue: z.coerce.number().int().min(0).max(100_000).default(128),
        idleTimeout: zDuration.default(5 * 60_000),
        /** How long one request may run in the app before the object is marked stuck (SPEC §3). */
        turnTimeout: zDuration.pipe(z.number().min(100)).default(60_000),
        /** Host lease TTL: a kill -9'd host's objects move after about this long. */
        leaseTtl: zDuration.pipe(z.number().min(200).max(60_000)).default(1_000),
        /** How long a caller waits for an object's answer. */
        requestTimeout: zDuration.pipe(z.number().min(100)).default(30_000),
        /** How long a caller waits for some host of the class before 503. */
        unavailableWait: zDuration.default(5_000),
        /** JetStream replicas of the class stream (falls back to 1 on a 1-node NATS). */
        streamReplicas: z.coerce.number().int().min(1).max(5).default(3),
      })
      .prefault({}),
    /** Replicated queues: for `queue-host`, the ReplicatedQueue it hosts (SPEC §3 fields and limits). */
    queues: z
      .object({
        /** The queue this queue-host serves (required for queue-host). */
        queue: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a Kubernetes resource name').optional(),
        hosts: z.coerce.number().int().min(1).max(1000).default(3),
        replicaCount: z.coerce.number().int().min(1).max(5).default(2),
        visibilityTimeout: zDuration.pipe(z.number().max(12 * 3_600_000)).default(30_000),
        messageRetention: zDuration.pipe(z.number().min(1_000).max(14 * 86_400_000)).default(4 * 86_400_000),
        maxMessageBytes: z.coerce.number().int().min(1).max(1_048_576).default(262_144),
        delay: zDuration.pipe(z.number().max(15 * 60_000)).default(0),
        deadLetterQueue: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a Kubernetes resource name').optional(),
        maxReceiveCount: z.coerce.number().int().min(1).max(1000).optional(),
      })
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.role === 'queue-host') {
      const q = c.queues;
      if (q.queue === undefined) ctx.addIssue({ code: 'custom', path: ['queues', 'queue'], message: 'required for role queue-host (CASTELLAN_QUEUE)' });
      if (q.replicaCount > q.hosts) ctx.addIssue({ code: 'custom', path: ['queues', 'replicaCount'], message: `must be at most hosts (${q.hosts})` });
      if (q.deadLetterQueue !== undefined && q.maxReceiveCount === undefined) {
        ctx.addIssue({ code: 'custom', path: ['queues', 'maxReceiveCount'], message: 'required with a dead-letter queue (CASTELLAN_MAX_RECEIVE_COUNT)' });
      }
      if (q.deadLetterQueue !== undefined && q.deadLetterQueue === q.queue) ctx.addIssue({ code: 'custom', path: ['queues', 'deadLetterQueue'], message: 'must name another queue' });
    }
    if (c.role !== 'object-host') return;
    if (c.objects.class === undefined) ctx.addIssue({ code: 'custom', path: ['objects', 'class'], message: 'required for role object-host (CASTELLAN_CLASS)' });
    if (c.objects.appPort === undefined) ctx.addIssue({ code: 'custom', path: ['objects', 'appPort'], message: 'required for role object-host (CASTELLAN_APP_PORT)' });
  });

export type SidecarConfig = z.infer<typeof sidecarConfigSchema>;

/** Environment variables the sidecar reads (SPEC §1 names the first two). */
export const sidecarEnv: EnvMap = {
  CASTELLAN_HTTP_PORT: 'http.port',
  CASTELLAN_NATS_URL: 'nats.urls',
  CASTELLAN_HTTP_HOST: 'http.host',
  CASTELLAN_ADMIN_PORT: 'admin.port',
  CASTELLAN_ADMIN_HOST: 'admin.host',
  CASTELLAN_ROLE: 'role',
  CASTELLAN_NATS_PREFIX: 'nats.prefix',
  POD_NAME: 'podName',
  POD_NAMESPACE: 'namespace',
  CASTELLAN_SERVICE_ACCOUNT: 'serviceAccount',
  CASTELLAN_ACCESS_CALLERS: 'access.callers',
  CASTELLAN_CLASS: 'objects.class',
  CASTELLAN_APP_PORT: 'objects.appPort',
  CASTELLAN_CONCURRENCY: 'objects.concurrency',
  CASTELLAN_MAX_QUEUE: 'objects.maxQueue',
  CASTELLAN_IDLE_TIMEOUT: 'objects.idleTimeout',
  CASTELLAN_TURN_TIMEOUT: 'objects.turnTimeout',
  CASTELLAN_LEASE_TTL: 'objects.leaseTtl',
  CASTELLAN_REQUEST_TIMEOUT: 'objects.requestTimeout',
  CASTELLAN_UNAVAILABLE_WAIT: 'objects.unavailableWait',
  CASTELLAN_STORAGE_REPLICAS: 'objects.streamReplicas',
  CASTELLAN_QUEUE: 'queues.queue',
  CASTELLAN_QUEUE_HOSTS: 'queues.hosts',
  CASTELLAN_QUEUE_REPLICA_COUNT: 'queues.replicaCount',
  CASTELLAN_VISIBILITY_TIMEOUT: 'queues.visibilityTimeout',
  CASTELLAN_MESSAGE_RETENTION: 'queues.messageRetention',
  CASTELLAN_MAX_MESSAGE_BYTES: 'queues.maxMessageBytes',
  CASTELLAN_QUEUE_DELAY: 'queues.delay',
  CASTELLAN_DEAD_LETTER_QUEUE: 'queues.deadLetterQueue',
  CASTELLAN_MAX_RECEIVE_COUNT: 'queues.maxReceiveCount',
  ...natsSecurityEnv,
};

export function loadSidecarConfig(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  return loadConfig(sidecarConfigSchema, { envMap: sidecarEnv, env, overrides, source: 'sidecar environment and flags' });
}
