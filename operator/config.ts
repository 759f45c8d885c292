/**
 * The operator's configuration: one zod schema fed by CASTELLAN_* environment
 * variables (the Helm chart sets them) and `castellan operator` flags.
 * Kubernetes access is the usual KUBECONFIG / in-cluster configuration.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfig, zBool, zDuration, zList, zPort, type EnvMap } from '../common/config.ts';

const natsUrl = z.string().regex(/^(nats|tls|ws|wss):\/\/[^\s,]+$/, 'expected a nats:// URL');
const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a Kubernetes name (DNS label)');

export const operatorConfigSchema = z
  .object({
    /** Pod (or process) identity, used as the leader-election identity. */
    identity: z.string().min(1).default(`${hostname()}-${process.pid}`),
    kubeconfig: z.string().min(1).optional(),
    nats: z
      .object({
        urls: zList.pipe(z.array(natsUrl).min(1, 'at least one NATS URL is required (CASTELLAN_NATS_URL)')),
        prefix: z.union([z.literal(''), z.string().regex(/^[A-Za-z0-9_-]{1,32}$/)]).optional(),
      })
      .prefault({ urls: [] }),
    /** Namespaces to watch; empty = all namespaces. */
    namespaces: zList.pipe(z.array(k8sName)).default([]),
    http: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        /** Unset: 8080, or any free port when 8080 is taken (logged). 0: any free port. */
        port: zPort.optional(),
      })
      .prefault({}),
    sidecar: z
      .object({
        image: z.string().min(1).default('ghcr.io/castellan-dev/castellan:0.1.0'),
        imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
        logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
        /** Default sidecar resources as JSON ({"requests":{...},"limits":{...}}), for resources that set none. */
        resources: z
          .string()
          .transform((text, ctx) => {
            try {
              return JSON.parse(text) as unknown;
            } catch {
              ctx.addIssue({ code: 'custom', message: 'expected JSON' });
              return z.NEVER;
            }
          })
          .pipe(z.object({ requests: z.record(z.string(), z.string()).optional(), limits: z.record(z.string(), z.string()).optional() }).strict())
          .optional(),
      })
      .prefault({}),
    leaderElection: z
      .object({
        enabled: zBool.default(true),
        namespace: k8sName.default('default'),
        lease: k8sName.default('castellan-operator'),
        leaseDuration: zDuration.pipe(z.number().min(1_000)).default(15_000),
        renewDeadline: zDuration.pipe(z.number().min(500)).default(10_000),
        retryPeriod: zDuration.pipe(z.number().min(100)).default(2_000),
      })
      .prefault({}),
    /** Reconcile workers (keys processed in parallel; one key never twice at once). */
    workers: z.coerce.number().int().min(1).max(64).default(4),
    /** Every resource is reconciled at least this often, events or not. */
    resyncPeriod: zDuration.pipe(z.number().min(1_000)).default(5 * 60_000),
  })
  .strict()
  .superRefine((c, ctx) => {
    const le = c.leaderElection;
    if (le.renewDeadline >= le.leaseDuration) ctx.addIssue({ code: 'custom', path: ['leaderElection', 'renewDeadline'], message: 'must be shorter than leaseDuration' });
    if (le.retryPeriod >= le.renewDeadline) ctx.addIssue({ code: 'custom', path: ['leaderElection', 'retryPeriod'], message: 'must be shorter than renewDeadline' });
  });

export type OperatorConfig = z.infer<typeof operatorConfigSchema>;

export const operatorEnv: EnvMap = {
  POD_NAME: 'identity',
  KUBECONFIG: 'kubeconfig',
  CASTELLAN_NATS_URL: 'nats.urls',
  CASTELLAN_NATS_PREFIX: 'nats.prefix',
  CASTELLAN_WATCH_NAMESPACES: 'namespaces',
  CASTELLAN_OPERATOR_HOST: 'http.host',
  CASTELLAN_OPERATOR_PORT: 'http.port',
  CASTELLAN_SIDECAR_IMAGE: 'sidecar.image',
  CASTELLAN_SIDECAR_IMAGE_PULL_POLICY: 'sidecar.imagePullPolicy',
  CASTELLAN_SIDECAR_LOG_LEVEL: 'sidecar.logLevel',
  CASTELLAN_SIDECAR_RESOURCES: 'sidecar.resources',
  CASTELLAN_LEADER_ELECT: 'leaderElection.enabled',
  CASTELLAN_LEADER_ELECTION_NAMESPACE: 'leaderElection.namespace',
  CASTELLAN_LEADER_ELECTION_LEASE: 'leaderElection.lease',
  CASTELLAN_LEADER_ELECTION_LEASE_DURATION: 'leaderElection.leaseDuration',
  CASTELLAN_LEADER_ELECTION_RENEW_DEADLINE: 'leaderElection.renewDeadline',
  CASTELLAN_LEADER_ELECTION_RETRY_PERIOD: 'leaderElection.retryPeriod',
  CASTELLAN_OPERATOR_WORKERS: 'workers',
  CASTELLAN_OPERATOR_RESYNC: 'resyncPeriod',
};

export function loadOperatorConfig(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  // The leader-election namespace defaults to the operator's own namespace in a pod.
  const withNs = env.CASTELLAN_LEADER_ELECTION_NAMESPACE === undefined && env.POD_NAMESPACE !== undefined ? { ...env, CASTELLAN_LEADER_ELECTION_NAMESPACE: env.POD_NAMESPACE } : env;
  return loadConfig(operatorConfigSchema, { envMap: operatorEnv, env: withNs, overrides, source: 'operator environment and flags' });
}
