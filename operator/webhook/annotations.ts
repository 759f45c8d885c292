/**
 * The pod annotations (and the one label) that ask for the Castellan client
 * sidecar and tune it, parsed and validated (pure, no I/O). Every problem
 * names the annotation it comes from, because the API server shows the
 * message to whoever created the pod.
 */
import { z } from 'zod';

const prefix = 'castellan.dev/';

export const annotations = {
  /** "true": inject the client sidecar; "false": never. Also accepted as a label (see docs/webhook.md). */
  inject: `${prefix}inject`,
  port: `${prefix}sidecar-port`,
  logLevel: `${prefix}sidecar-log-level`,
  cpuRequest: `${prefix}sidecar-cpu-request`,
  cpuLimit: `${prefix}sidecar-cpu-limit`,
  memoryRequest: `${prefix}sidecar-memory-request`,
  memoryLimit: `${prefix}sidecar-memory-limit`,
  natsUrl: `${prefix}nats-url`,
  natsPrefix: `${prefix}nats-prefix`,
  /** Set by the webhook on the pods it injected (value: the sidecar image). */
  injected: `${prefix}sidecar-injected`,
} as const;

/** The label that opts a pod in strictly (its webhook entry fails closed; docs/webhook.md). */
export const injectLabel = annotations.inject;

const known = new Set<string>(Object.values(annotations));

/** Kubernetes resource quantities as users write them for CPU and memory (e.g. 100m, 0.5, 64Mi, 1G). */
const quantityPattern = /^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const multipliers: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The value of a quantity, or undefined when it is not one. */
export function quantityValue(q: string | number): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) && q >= 0 ? q : undefined;
  const m = quantityPattern.exec(q);
  if (m === null) return undefined;
  return Number(`${m[1]}`) * (multipliers[m[3] ?? ''] as number);
}

const natsUrlPattern = /^(nats|tls|ws|wss):\/\/[^\s,]+$/;

const fields = {
  port: z
    .string()
    .regex(/^[0-9]{1,5}$/, 'must be a port number (1-65535)')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be a port number (1-65535)').max(65535, 'must be a port number (1-65535)')),
  logLevel: z.enum(['debug', 'info', 'warn', 'error'], 'must be one of debug, info, warn, error'),
  quantity: z.string().refine((q) => quantityValue(q) !== undefined, 'must be a Kubernetes quantity such as 100m, 0.5, 64Mi or 1Gi'),
  natsUrl: z
    .string()
    .transform((s) => s.split(',').map((u) => u.trim()))
    .pipe(z.array(z.string().regex(natsUrlPattern, 'must be comma-separated nats:// (or tls://, ws://, wss://) URLs')).min(1)),
  natsPrefix: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'must be 1-32 letters, digits, _ or -'),
};

export interface SidecarRequest {
  port?: number;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  requests: { cpu?: string; memory?: string };
  limits: { cpu?: string; memory?: string };
  natsUrls?: string[];
  natsPrefix?: string;
}

export type InjectWish = { wish: 'none' } | { wish: 'skip'; reason: string } | { wish: 'inject'; via: 'annotation' | 'label' | 'both' } | { wish: 'invalid'; problems: string[] };

/** Does the pod ask for the sidecar? From the inject annotation and the inject label. */
export function injectWish(podAnnotations: Record<string, string>, podLabels: Record<string, string>): InjectWish {
  const a = podAnnotations[annotations.inject];
  const l = podLabels[injectLabel];
  const problems: string[] = [];
  if (a !== undefined && a !== 'true' && a !== 'false') problems.push(`annotation ${annotations.inject}: must be "true" or "false", got ${JSON.stringify(a)}`);
  if (l !== undefined && l !== 'true' && l !== 'false') problems.push(`label ${injectLabel}: must be "true" or "false", got ${JSON.stringify(l)}`);
  if (problems.length > 0) return { wish: 'invalid', problems };
  if (a !== undefined && l !== undefined && a !== l) {
    return { wish: 'invalid', problems: [`annotation ${annotations.inject} (${a}) and label ${injectLabel} (${l}) disagree`] };
  }
  const v = a ?? l;
  if (v === undefined) return { wish: 'none' };
  if (v === 'false') return { wish: 'skip', reason: `${annotations.inject} is "false"` };
  return { wish: 'inject', via: a !== undefined && l !== undefined ? 'both' : a !== undefined ? 'annotation' : 'label' };
}

/**
 * The sidecar options of an opted-in pod. `allowNatsOverride` is the
 * operator's setting: without it the NATS annotations are refused (a pod must
 * not point its sidecar at a NATS system the cluster admin did not choose).
 */
export function parseSidecarRequest(podAnnotations: Record<string, string>, allowNatsOverride: boolean): { ok: true; request: SidecarRequest } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  const take = <T>(name: string, schema: z.ZodType<T>): T | undefined => {
    const raw = podAnnotations[name];
    if (raw === undefined) return undefined;
    const r = schema.safeParse(raw);
    if (r.success) return r.data;
    problems.push(`annotation ${name}: ${r.error.issues[0]?.message ?? 'invalid'} (got ${JSON.stringify(raw)})`);
    return undefined;
  };
  const request: SidecarRequest = {
    port: take(annotations.port, fields.port),
    logLevel: take(annotations.logLevel, fields.logLevel),
    requests: { cpu: take(annotations.cpuRequest, fields.quantity), memory: take(annotations.memoryRequest, fields.quantity) },
    limits: { cpu: take(annotations.cpuLimit, fields.quantity), memory: take(annotations.memoryLimit, fields.quantity) },
    natsUrls: take(annotations.natsUrl, fields.natsUrl),
    natsPrefix: take(annotations.natsPrefix, fields.natsPrefix),
  };
  for (const name of [annotations.natsUrl, annotations.natsPrefix]) {
    if (!allowNatsOverride && podAnnotations[name] !== undefined) {
      problems.push(`annotation ${name}: NATS overrides are not allowed by this operator (webhook.allowNatsOverride is false)`);
    }
  }
  for (const name of Object.keys(podAnnotations)) {
    if ((name.startsWith(`${prefix}sidecar-`) || name.startsWith(`${prefix}nats-`)) && !known.has(name)) {
      problems.push(`annotation ${name}: unknown Castellan annotation (known: ${[...known].filter((k) => k !== annotations.inject && k !== annotations.injected).join(', ')})`);
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, request };
}
