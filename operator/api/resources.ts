/**
 * The custom resources as the operator reads them: zod schemas for the spec
 * of DurableObject and ReplicatedQueue (castellan.dev/v1alpha1, SPEC §3).
 *
 * The API server already validates and defaults them (crds/); the operator
 * parses again at its boundary so that a resource stored before a default
 * existed, or edited around the schema, still yields a complete spec — or a
 * clear InvalidSpec condition instead of a crash.
 */
import { z } from 'zod';
import { accessCallersSchema } from '../../common/access.ts';

export const group = 'castellan.dev';
export const version = 'v1alpha1';
export const apiVersion = `${group}/${version}`;

export const kinds = {
  DurableObject: { kind: 'DurableObject', plural: 'durableobjects' },
  ReplicatedQueue: { kind: 'ReplicatedQueue', plural: 'replicatedqueues' },
} as const;
export type KindName = keyof typeof kinds;

/** Duration strings as the CRDs accept them (e.g. 30s, 1h30m, 4d). */
const zDurationText = z.string().regex(/^([0-9]{1,5}d)?([0-9]{1,9}([.][0-9]{1,9})?(ms|s|m|h))*$/, 'expected a duration such as 30s, 5m or 4d').min(2);

const zNats = z
  .object({
    urls: z.array(z.string().regex(/^(nats|tls|ws|wss):\/\/[^\s,]+$/, 'expected a nats:// URL')).min(1).optional(),
    prefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/).optional(),
  })
  .optional();

const zEnvVar = z.looseObject({ name: z.string().min(1), value: z.string().optional() });

const zSidecar = z
  .object({
    image: z.string().min(1).optional(),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
    httpPort: z.number().int().min(1).max(65535).optional(),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
    resources: z
      .object({
        requests: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
        limits: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
      })
      .optional(),
    env: z.array(zEnvVar).optional(),
  })
  .optional();

const deletionPolicy = z.enum(['Retain', 'Delete']).default('Retain');
/** Who may call the resource besides its own namespace (common/access.ts, docs/security.md §3). */
const zAccess = z.object({ callers: accessCallersSchema.optional() }).optional();

export const durableObjectSpecSchema = z
  .object({
    replicas: z.number().int().min(1).default(2),
    template: z.object({
      metadata: z
        .object({
          labels: z.record(z.string(), z.string()).optional(),
          annotations: z.record(z.string(), z.string()).optional(),
        })
        .optional(),
      spec: z.looseObject({ containers: z.array(z.looseObject({ name: z.string().min(1) })).min(1) }),
    }),
    appPort: z.number().int().min(1).max(65535),
    concurrency: z.enum(['Serial', 'Concurrent']).default('Serial'),
    idleTimeout: zDurationText.default('5m'),
    turnTimeout: zDurationText.default('60s'),
    storage: z.object({ replicas: z.number().int().min(1).max(5).default(3) }).prefault({}),
    access: zAccess,
    deletionPolicy,
    nats: zNats,
    sidecar: zSidecar,
  })
  .superRefine((s, ctx) => {
    if (s.appPort === (s.sidecar?.httpPort ?? 3600)) {
      ctx.addIssue({ code: 'custom', path: ['appPort'], message: "appPort must differ from the sidecar's HTTP port" });
    }
  });

export const replicatedQueueSpecSchema = z
  .object({
    hosts: z.number().int().min(1).default(3),
    replicaCount: z.number().int().min(1).max(5).default(2),
    visibilityTimeout: zDurationText.default('30s'),
    messageRetention: zDurationText.default('4d'),
    maxMessageBytes: z.number().int().min(1).max(1_048_576).default(262_144),
    delay: zDurationText.or(z.literal('0s')).default('0s'),
    deadLetter: z.object({ queue: z.string().min(1), maxReceiveCount: z.number().int().min(1).max(1000) }).optional(),
    access: zAccess,
    deletionPolicy,
    nats: zNats,
    sidecar: zSidecar,
    /** Queue-host pod settings (labels, annotations, scheduling, pull secrets); the CRD schema checks the Kubernetes shapes. */
    podTemplate: z
      .object({
        metadata: z.object({ labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() }).optional(),
        nodeSelector: z.record(z.string(), z.string()).optional(),
        tolerations: z.array(z.record(z.string(), z.unknown())).optional(),
        affinity: z.record(z.string(), z.unknown()).optional(),
        topologySpreadConstraints: z.array(z.record(z.string(), z.unknown())).optional(),
        priorityClassName: z.string().optional(),
        imagePullSecrets: z.array(z.object({ name: z.string() })).optional(),
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    if (s.replicaCount > s.hosts) ctx.addIssue({ code: 'custom', path: ['replicaCount'], message: 'replicaCount must be less than or equal to hosts' });
  });

export type DurableObjectSpec = z.infer<typeof durableObjectSpecSchema>;
export type ReplicatedQueueSpec = z.infer<typeof replicatedQueueSpecSchema>;
export type SidecarOverrides = NonNullable<DurableObjectSpec['sidecar']>;
export type EnvVar = z.infer<typeof zEnvVar>;

/** Metadata fields the operator uses. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  generation?: number;
  resourceVersion?: string;
  deletionTimestamp?: Date;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface CustomResource<S = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: S;
  status?: Record<string, unknown>;
}

/** Parses a spec; on failure a one-line message naming the fields (spec.x: ...). */
export function parseSpec<T>(schema: z.ZodType<T>, spec: unknown): { ok: true; spec: T } | { ok: false; message: string } {
  const r = schema.safeParse(spec ?? {});
  if (r.success) return { ok: true, spec: r.data };
  return { ok: false, message: r.error.issues.map((i) => `spec.${i.path.map(String).join('.')}: ${i.message}`).join('; ') };
}
