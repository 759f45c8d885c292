/**
 * `castellan.dev.yaml`: what `castellan dev` runs (SPEC §4), as one zod schema.
 *
 * SPEC fields: `nats`, `objects` (DurableObject classes), `queues`
 * (ReplicatedQueues, with the CRD's fields and limits), `client`. Extension:
 * `apps`, plain processes (queue workers, front ends) that call Castellan
 * through the client sidecar.
 */
import { z } from 'zod';
import { loadConfig, zDuration, zPort } from '../../common/config.ts';
import { natsAuthSchema, natsTlsSchema } from '../../common/nats-security.ts';

/** Kubernetes resource names, as the CRDs require for classes and queues. */
const resourceName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'names are Kubernetes names: 1-63 lowercase letters, digits and -, starting and ending with a letter or digit');

/** A process started with `/bin/sh -c`: it is given PORT and CASTELLAN_SIDECAR_URL. */
const appSchema = z
  .object({
    /** Shell command that starts the app; an app serving requests listens on $PORT (127.0.0.1). */
    command: z.string().min(1),
    env: z.record(z.string(), z.string()).default({}),
    /** Working directory (default: where `castellan dev` runs). */
    cwd: z.string().min(1).optional(),
  })
  .strict();

/** A DurableObject class as `castellan dev` runs it: N host sidecars, each with its own app process. */
const objectClassSchema = z
  .object({
    hosts: z.number().int().min(1).max(16).default(1),
    app: appSchema,
    concurrency: z.enum(['Serial', 'Concurrent']).default('Serial'),
    idleTimeout: zDuration.optional(),
    /** How long one request may run in the app before the object is marked stuck (default 60s). */
    turnTimeout: zDuration.optional(),
    /** Host lease TTL: how fast objects of a killed host move (default 1s). */
    leaseTtl: zDuration.optional(),
    /** Extension: calls the ready banner suggests, as `METHOD /path [body]`, e.g. `POST /increment`. */
    try: z.array(z.string().regex(/^(GET|HEAD|POST|PUT|PATCH|DELETE) \/\S*( .+)?$/, 'expected "METHOD /path [body]"')).default([]),
  })
  .strict();

/** A duration with bounds, reported in the unit the user writes. */
const boundedDuration = (max: number, maxText: string, min = 0, minText = '0s') =>
  zDuration.pipe(z.number().min(min, `must be at least ${minText}`).max(max, `must be at most ${maxText}`));

/** A ReplicatedQueue as `castellan dev` runs it: N queue-host sidecars. Fields and limits as the CRD (SPEC §3). */
const queueSchema = z
  .object({
    hosts: z.number().int().min(1).max(16).default(3),
    replicaCount: z.number().int().min(1).max(5).default(2),
    visibilityTimeout: boundedDuration(12 * 3_600_000, '12h').default(30_000),
    messageRetention: boundedDuration(14 * 86_400_000, '14d', 60_000, '1m').default(4 * 86_400_000),
    maxMessageBytes: z.number().int().min(1).max(1_048_576).default(262_144),
    delay: boundedDuration(15 * 60_000, '15m').default(0),
    deadLetter: z.object({ queue: resourceName, maxReceiveCount: z.number().int().min(1).max(1000) }).strict().optional(),
  })
  .strict();

/** Extension: a process that is not an object's app, e.g. a queue worker. */
const devAppSchema = appSchema
  .extend({
    /** How many copies to run (names `<app>-0`, `<app>-1`, ...). */
    replicas: z.number().int().min(1).max(16).default(1),
    /** The queue this app works on, shown in state.json as `"queue"` (informational). */
    queue: resourceName.optional(),
    /** The object class this app belongs to, shown in state.json as `"class"` (informational). */
    class: resourceName.optional(),
  })
  .strict();

/** A map from resource name to definition; a bad name is reported with the name rule. */
const byName = <T extends z.ZodType>(value: T) =>
  z.record(resourceName, value, {
    error: (iss) => (iss.code === 'invalid_key' ? `bad name: ${iss.issues?.[0]?.message ?? 'not a Kubernetes name'}` : undefined),
  });

export type DevApp = z.infer<typeof appSchema>;
export type DevObjectClass = z.infer<typeof objectClassSchema>;
export type DevQueue = z.infer<typeof queueSchema>;
export type DevExtraApp = z.infer<typeof devAppSchema>;

export const devConfigSchema = z
  .object({
    nats: z
      .union([
        z
          .object({
            embedded: z.object({ servers: z.union([z.literal(1), z.literal(3)]).default(1) }).strict().prefault({}),
            /** Extension: the embedded servers require this (token, user+password or nkeySeed) and the sidecars present it. */
            auth: natsAuthSchema.optional(),
          })
          .strict()
          .superRefine((n, ctx) => {
            const a = n.auth;
            if (a?.creds !== undefined || a?.serviceAccountToken !== undefined) {
              ctx.addIssue({ code: 'custom', path: ['auth'], message: 'the embedded NATS takes token, user+password or nkeySeed; for creds use nats.url with a NATS in operator mode' });
            }
          }),
        z
          .object({
            url: z.string().regex(/^(nats|tls):\/\/\S+$/, 'expected nats://host:port[,nats://…]'),
            /** SPEC §4: creds | nkeySeed | user+password | token (files relative to the working directory). */
            auth: natsAuthSchema.optional(),
            /** SPEC §4: ca, and cert + key for mutual TLS (files). */
            tls: natsTlsSchema.optional(),
          })
          .strict(),
      ])
      .default({ embedded: { servers: 1 } }),
    objects: byName(objectClassSchema).default({}),
    queues: byName(queueSchema).default({}),
    apps: byName(devAppSchema).default({}),
    client: z.object({ port: zPort.pipe(z.number().min(1, 'must be a port from 1 to 65535')).default(3600) }).strict().prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const owner = new Map<string, string>();
    for (const section of ['objects', 'queues', 'apps'] as const) {
      for (const name of Object.keys(c[section])) {
        const prev = owner.get(name);
        if (name === 'client') {
          ctx.addIssue({ code: 'custom', path: [section, name], message: '"client" is the name of the client sidecar; choose another name' });
        } else if (prev !== undefined) {
          ctx.addIssue({ code: 'custom', path: [section, name], message: `"${name}" is already used in ${prev}; process names must be unique` });
        } else {
          owner.set(name, section);
        }
      }
    }
    for (const [name, q] of Object.entries(c.queues)) {
      if (q.replicaCount > q.hosts) {
        ctx.addIssue({ code: 'custom', path: ['queues', name, 'replicaCount'], message: `must be at most hosts (${q.hosts})` });
      }
      if (q.deadLetter !== undefined) {
        if (q.deadLetter.queue === name) {
          ctx.addIssue({ code: 'custom', path: ['queues', name, 'deadLetter', 'queue'], message: 'must name another queue, not this one' });
        } else if (c.queues[q.deadLetter.queue] === undefined) {
          ctx.addIssue({ code: 'custom', path: ['queues', name, 'deadLetter', 'queue'], message: `queue "${q.deadLetter.queue}" is not defined under queues` });
        }
      }
    }
    const seen = new Set<string>();
    for (const name of processNames(c)) {
      if (seen.has(name)) ctx.addIssue({ code: 'custom', path: [], message: `two processes would be named "${name}"; rename a class, queue or app` });
      seen.add(name);
    }
    for (const [name, a] of Object.entries(c.apps)) {
      if (a.queue !== undefined && c.queues[a.queue] === undefined) {
        ctx.addIssue({ code: 'custom', path: ['apps', name, 'queue'], message: `queue "${a.queue}" is not defined under queues` });
      }
      if (a.class !== undefined && c.objects[a.class] === undefined) {
        ctx.addIssue({ code: 'custom', path: ['apps', name, 'class'], message: `class "${a.class}" is not defined under objects` });
      }
    }
  });

export type DevConfig = z.infer<typeof devConfigSchema>;

type Sections = Pick<DevConfig, 'objects' | 'queues' | 'apps'>;

/** Names of the processes `castellan dev` starts, as listed in state.json. */
export function processNames(c: Sections): string[] {
  const names: string[] = [];
  for (const [cls, def] of Object.entries(c.objects)) for (let i = 0; i < def.hosts; i++) names.push(`${cls}-${i}`, `${cls}-${i}-app`);
  for (const [queue, def] of Object.entries(c.queues)) for (let i = 0; i < def.hosts; i++) names.push(`${queue}-${i}`);
  for (const [app, def] of Object.entries(c.apps)) for (let i = 0; i < def.replicas; i++) names.push(`${app}-${i}`);
  names.push('client');
  return names;
}

/** Loads and validates a dev file; `overrides` (from flags) win over the file. */
export function loadDevConfig(file: string, overrides: Record<string, unknown> = {}): DevConfig {
  return loadConfig(devConfigSchema, { file, source: file, overrides });
}
