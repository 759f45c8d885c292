/**
 * `castellan.dev.yaml`: what `castellan dev` runs (SPEC §4).
 */
import { z } from 'zod';
import { loadConfig, zDuration, zPort } from '../../common/config.ts';

/** A DurableObject class as `castellan dev` runs it: N host sidecars, each with its own app process. */
const objectClassSchema = z
  .object({
    hosts: z.number().int().min(1).max(16).default(1),
    app: z
      .object({
        /** Shell command that starts the app; it must listen on $PORT (127.0.0.1). */
        command: z.string().min(1),
        env: z.record(z.string(), z.string()).default({}),
      })
      .strict(),
    concurrency: z.enum(['Serial', 'Concurrent']).default('Serial'),
    idleTimeout: zDuration.optional(),
    /** Host lease TTL: how fast objects of a killed host move (default 2s). */
    leaseTtl: zDuration.optional(),
  })
  .strict();

export type DevObjectClass = z.infer<typeof objectClassSchema>;

const className = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'class names are Kubernetes names: lowercase letters, digits and -');

export const devConfigSchema = z
  .object({
    nats: z
      .union([
        z.object({ embedded: z.object({ servers: z.union([z.literal(1), z.literal(3)]).default(1) }).strict().prefault({}) }).strict(),
        z.object({ url: z.string().regex(/^nats:\/\/\S+$/, 'expected nats://host:port[,nats://…]') }).strict(),
      ])
      .default({ embedded: { servers: 1 } }),
    objects: z.record(className, objectClassSchema).default({}),
    client: z.object({ port: zPort.default(3600) }).strict().prefault({}),
  })
  .strict();

export type DevConfig = z.infer<typeof devConfigSchema>;

export function loadDevConfig(file: string): DevConfig {
  return loadConfig(devConfigSchema, { file, source: file });
}
