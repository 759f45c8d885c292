/**
 * The operator's configuration: one zod schema fed by CASTELLAN_* environment
 * variables (the Helm chart sets them) and `castellan operator` flags.
 * Kubernetes access is the usual KUBECONFIG / in-cluster configuration.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfig, zBool, zDuration, zList, zPort, type EnvMap } from '../common/config.ts';
import { natsAuthSchema, natsSecurityEnv, natsSecurityShape } from '../common/nats-security.ts';

const natsUrl = z.string().regex(/^(nats|tls|ws|wss):\/\/[^\s,]+$/, 'expected a nats:// URL');
const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a Kubernetes name (DNS label)');

export const operatorConfigSchema = z
  .object({
    /** Pod (or process) identity, used as the leader-election identity. */
    identity: z.string().min(1).default(`${hostname()}-${process.pid}`),
    /** The operator's ServiceAccount: the caller it names in queue-host calls (common/access.ts; with the auth callout, its token's). */
    serviceAccount: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a ServiceAccount name').default('default'),
    kubeconfig: z.string().min(1).optional(),
    nats: z
      .object({
        urls: zList.pipe(z.array(natsUrl).min(1, 'at least one NATS URL is required (CASTELLAN_NATS_URL)')),
        prefix: z.union([z.literal(''), z.string().regex(/^[A-Za-z0-9_-]{1,32}$/)]).optional(),
        /**
         * NATS URLs a resource's spec.nats.urls may name besides `urls` (docs/security.md);
         * `*` allows any. Anything else is refused, so editing a resource cannot make the operator dial an address.
         */
        allowedUrls: zList.pipe(z.array(z.union([z.literal('*'), natsUrl]))).default([]),
        /** Credentials and TLS (SPEC §1 CASTELLAN_NATS_CREDS … CASTELLAN_NATS_TLS_KEY). */
        ...natsSecurityShape,
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
        /**
         * Secured cluster (docs/security.md §2): every sidecar the operator adds gets a projected
         * ServiceAccount token with this audience (the auth callout's) as its NATS credential.
         */
        tokenAudience: z.string().min(1).optional(),
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
    /**
     * The NATS auth callout service (operator/authcallout, docs/security.md): every replica
     * answers `$SYS.REQ.USER.AUTH` for the NATS servers, giving each ServiceAccount token its
     * namespace's account and subjects.
     */
    authCallout: z
      .object({
        enabled: zBool.default(false),
        /** File with the issuer account's nkey seed (`SA…`); its public key is the server's `auth_callout.issuer`. */
        issuerSeed: z.string().min(1).optional(),
        /** Audience the projected ServiceAccount tokens must carry. */
        audience: z.string().min(1).default('castellan'),
        /** ServiceAccounts (`system:serviceaccount:<ns>:<name>`) that may act for any namespace: the operator's own. */
        admins: zList.default([]),
        /** NATS account of a namespace = accountPrefix + namespace. */
        accountPrefix: z.string().regex(/^[A-Za-z0-9_-]*$/).default(''),
        /** Longest life of one connection's grant (0 = the token's own expiry); revocations take effect within it. */
        maxTtl: zDuration.default(0),
        /** The callout's own connection: a user listed in the server's `auth_callout.auth_users`. */
        nats: z.object({ auth: natsAuthSchema.prefault({}) }).strict().prefault({}),
        /**
         * NATS operator mode (docs/security.md): file with the operator signing key seed (`SO…`) that signs
         * the namespace accounts the callout creates. Without it, accounts are in the server configuration.
         */
        operatorSigningSeed: z.string().min(1).optional(),
        /** Operator mode: creds file of a system-account user that may publish `$SYS.REQ.CLAIMS.UPDATE`. */
        systemCreds: z.string().min(1).optional(),
        /** Operator mode: file with the secret namespace account keys are derived from (default: the issuer seed). */
        accountKeySecret: z.string().min(1).optional(),
        /** File with the callout's curve key seed (`SX…`) when the server encrypts callout requests (xkey). */
        xkeySeed: z.string().min(1).optional(),
      })
      .strict()
      .prefault({})
      .superRefine((a, ctx) => {
        if (a.enabled && a.issuerSeed === undefined) ctx.addIssue({ code: 'custom', path: ['issuerSeed'], message: 'required with the auth callout (CASTELLAN_AUTH_CALLOUT_ISSUER_SEED)' });
        if (a.operatorSigningSeed !== undefined && a.systemCreds === undefined) ctx.addIssue({ code: 'custom', path: ['systemCreds'], message: 'required in operator mode (CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS)' });
        if (a.operatorSigningSeed === undefined && (a.systemCreds ?? a.accountKeySecret) !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['operatorSigningSeed'], message: 'required with CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS or CASTELLAN_AUTH_CALLOUT_ACCOUNT_KEY_SECRET (operator mode)' });
        }
      }),
    /** The admission webhook that injects the client sidecar into annotated pods (operator/webhook/, docs/webhook.md). */
    webhook: z
      .object({
        enabled: zBool.default(false),
        /** HTTPS address; every replica serves admission, leader or not. */
        host: z.string().min(1).default('127.0.0.1'),
        port: zPort.default(9443),
        /** `operator`: self-signed CA and serving certificate kept by the leader; `cert-manager`: only read the Secret. */
        certificates: z.enum(['operator', 'cert-manager']).default('operator'),
        secretName: k8sName.default('castellan-webhook-tls'),
        /** Namespace of the Secret; default: the leader-election namespace (the operator's own). */
        namespace: k8sName.optional(),
        /** The MutatingWebhookConfiguration whose caBundle the leader keeps (never created by the operator). */
        configurationName: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a Kubernetes object name').default('castellan-webhook'),
        /** Names the serving certificate is valid for (the Service's DNS names). */
        dnsNames: zList.pipe(z.array(z.string().regex(/^[A-Za-z0-9*]([-A-Za-z0-9.]*[A-Za-z0-9])?$/, 'expected a DNS name'))).default([]),
        ipAddresses: zList.pipe(z.array(z.union([z.ipv4(), z.ipv6()]))).default([]),
        caValidity: zDuration.pipe(z.number().min(30_000)).default(5 * 365 * 86_400_000),
        certValidity: zDuration.pipe(z.number().min(10_000)).default(90 * 86_400_000),
        /** A new CA signs serving certificates only after it has been in the caBundle this long. */
        caPropagation: zDuration.pipe(z.number().min(0)).default(60_000),
        /** How often certificates are checked (leader) and reloaded from the Secret (every replica). */
        checkInterval: zDuration.pipe(z.number().min(200)).default(30_000),
        /** Whether pods may set castellan.dev/nats-url and castellan.dev/nats-prefix. */
        allowNatsOverride: zBool.default(false),
        /** Resources of every injected sidecar, as JSON {"requests":{...},"limits":{...}} in the environment. */
        sidecarResources: z
          .union([z.string(), z.record(z.string(), z.unknown())])
          .transform((v, ctx) => {
            if (typeof v !== 'string') return v;
            try {
              return JSON.parse(v === '' ? '{}' : v) as unknown;
            } catch {
              ctx.addIssue({ code: 'custom', message: 'expected JSON such as {"requests":{"cpu":"50m"}}' });
              return z.NEVER;
            }
          })
          .pipe(
            z
              .object({
                requests: z.record(z.string(), z.coerce.string()).optional(),
                limits: z.record(z.string(), z.coerce.string()).optional(),
              })
              .strict(),
          )
          .default({}),
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
    const wh = c.webhook;
    if (wh.enabled && wh.certificates === 'operator' && wh.dnsNames.length === 0 && wh.ipAddresses.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['webhook', 'dnsNames'], message: 'the webhook needs at least one DNS name or IP address for its certificate' });
    }
    if (wh.certValidity > wh.caValidity / 3) ctx.addIssue({ code: 'custom', path: ['webhook', 'certValidity'], message: 'must be at most a third of caValidity' });
    if (le.retryPeriod >= le.renewDeadline) ctx.addIssue({ code: 'custom', path: ['leaderElection', 'retryPeriod'], message: 'must be shorter than renewDeadline' });
  });

export type OperatorConfig = z.infer<typeof operatorConfigSchema>;

export const operatorEnv: EnvMap = {
  POD_NAME: 'identity',
  CASTELLAN_SERVICE_ACCOUNT: 'serviceAccount',
  KUBECONFIG: 'kubeconfig',
  CASTELLAN_NATS_URL: 'nats.urls',
  CASTELLAN_NATS_PREFIX: 'nats.prefix',
  CASTELLAN_NATS_ALLOWED_URLS: 'nats.allowedUrls',
  ...natsSecurityEnv,
  CASTELLAN_WATCH_NAMESPACES: 'namespaces',
  CASTELLAN_OPERATOR_HOST: 'http.host',
  CASTELLAN_OPERATOR_PORT: 'http.port',
  CASTELLAN_SIDECAR_IMAGE: 'sidecar.image',
  CASTELLAN_SIDECAR_IMAGE_PULL_POLICY: 'sidecar.imagePullPolicy',
  CASTELLAN_SIDECAR_LOG_LEVEL: 'sidecar.logLevel',
  CASTELLAN_SIDECAR_TOKEN_AUDIENCE: 'sidecar.tokenAudience',
  CASTELLAN_SIDECAR_RESOURCES: 'sidecar.resources',
  CASTELLAN_LEADER_ELECT: 'leaderElection.enabled',
  CASTELLAN_LEADER_ELECTION_NAMESPACE: 'leaderElection.namespace',
  CASTELLAN_LEADER_ELECTION_LEASE: 'leaderElection.lease',
  CASTELLAN_LEADER_ELECTION_LEASE_DURATION: 'leaderElection.leaseDuration',
  CASTELLAN_LEADER_ELECTION_RENEW_DEADLINE: 'leaderElection.renewDeadline',
  CASTELLAN_LEADER_ELECTION_RETRY_PERIOD: 'leaderElection.retryPeriod',
  CASTELLAN_AUTH_CALLOUT: 'authCallout.enabled',
  CASTELLAN_AUTH_CALLOUT_ISSUER_SEED: 'authCallout.issuerSeed',
  CASTELLAN_AUTH_CALLOUT_AUDIENCE: 'authCallout.audience',
  CASTELLAN_AUTH_CALLOUT_ADMINS: 'authCallout.admins',
  CASTELLAN_AUTH_CALLOUT_ACCOUNT_PREFIX: 'authCallout.accountPrefix',
  CASTELLAN_AUTH_CALLOUT_MAX_TTL: 'authCallout.maxTtl',
  CASTELLAN_AUTH_CALLOUT_NATS_CREDS: 'authCallout.nats.auth.creds',
  CASTELLAN_AUTH_CALLOUT_NATS_NKEY_SEED: 'authCallout.nats.auth.nkeySeed',
  CASTELLAN_AUTH_CALLOUT_NATS_USER: 'authCallout.nats.auth.user',
  CASTELLAN_AUTH_CALLOUT_NATS_PASSWORD: 'authCallout.nats.auth.password',
  CASTELLAN_AUTH_CALLOUT_NATS_TOKEN: 'authCallout.nats.auth.token',
  CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED: 'authCallout.operatorSigningSeed',
  CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS: 'authCallout.systemCreds',
  CASTELLAN_AUTH_CALLOUT_ACCOUNT_KEY_SECRET: 'authCallout.accountKeySecret',
  CASTELLAN_AUTH_CALLOUT_XKEY_SEED: 'authCallout.xkeySeed',
  CASTELLAN_WEBHOOK_ENABLED: 'webhook.enabled',
  CASTELLAN_WEBHOOK_HOST: 'webhook.host',
  CASTELLAN_WEBHOOK_PORT: 'webhook.port',
  CASTELLAN_WEBHOOK_CERTIFICATES: 'webhook.certificates',
  CASTELLAN_WEBHOOK_SECRET: 'webhook.secretName',
  CASTELLAN_WEBHOOK_NAMESPACE: 'webhook.namespace',
  CASTELLAN_WEBHOOK_CONFIGURATION: 'webhook.configurationName',
  CASTELLAN_WEBHOOK_DNS_NAMES: 'webhook.dnsNames',
  CASTELLAN_WEBHOOK_IP_ADDRESSES: 'webhook.ipAddresses',
  CASTELLAN_WEBHOOK_CA_VALIDITY: 'webhook.caValidity',
  CASTELLAN_WEBHOOK_CERT_VALIDITY: 'webhook.certValidity',
  CASTELLAN_WEBHOOK_CA_PROPAGATION: 'webhook.caPropagation',
  CASTELLAN_WEBHOOK_CHECK_INTERVAL: 'webhook.checkInterval',
  CASTELLAN_WEBHOOK_ALLOW_NATS_OVERRIDE: 'webhook.allowNatsOverride',
  CASTELLAN_WEBHOOK_SIDECAR_RESOURCES: 'webhook.sidecarResources',
  CASTELLAN_OPERATOR_WORKERS: 'workers',
  CASTELLAN_OPERATOR_RESYNC: 'resyncPeriod',
};

export function loadOperatorConfig(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  // The leader-election namespace defaults to the operator's own namespace in a pod.
  const withNs = env.CASTELLAN_LEADER_ELECTION_NAMESPACE === undefined && env.POD_NAMESPACE !== undefined ? { ...env, CASTELLAN_LEADER_ELECTION_NAMESPACE: env.POD_NAMESPACE } : env;
  return loadConfig(operatorConfigSchema, { envMap: operatorEnv, env: withNs, overrides, source: 'operator environment and flags' });
}
