/**
 * Injection of the Castellan client sidecar into a pod being created: a pure
 * decision (no I/O) from the pod, its namespace and the operator's settings to
 * "leave it", "refuse it (message naming the annotation)" or "apply this JSON
 * patch".
 *
 * The container comes from the same builder as the object hosts' sidecar
 * (operator/desired/common.ts `sidecarContainer`), in the client role, as a
 * native sidecar (an init container with restartPolicy Always) placed first,
 * so that the pod's other init containers and its app start once the sidecar
 * answers its startup probe, and the sidecar stops after them.
 *
 * Idempotent: a pod that already has a Castellan sidecar (injected, or
 * hand-written: a container named castellan-sidecar or running
 * `castellan sidecar`) gets no second one; a reinvocation after a later
 * webhook prepended init containers only moves the injected sidecar back to
 * the front.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Volume } from '@kubernetes/client-node';
import type { SidecarOverrides } from '../api/resources.ts';
import { defaultSidecarPort, natsSettings, sidecarContainer, sidecarContainerName, sidecarVolumes, type OperatorDefaults } from '../desired/common.ts';
import { annotations, injectWish, parseSidecarRequest, quantityValue, type SidecarRequest } from './annotations.ts';

export interface InjectionSettings {
  defaults: OperatorDefaults;
  /** Resources of every injected sidecar; annotations override them key by key. */
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** Whether pods may point their sidecar at other NATS servers (castellan.dev/nats-url, nats-prefix). */
  allowNatsOverride: boolean;
  /** Namespaces the operator watches; empty means all. */
  namespaces: string[];
}

export interface JsonPatchOp {
  op: 'add';
  path: string;
  value: unknown;
}

export type InjectionDecision =
  | { decision: 'allow'; reason: string }
  | { decision: 'patch'; reason: string; patch: JsonPatchOp[] }
  | { decision: 'deny'; message: string };

/** Is this container a Castellan sidecar (by name, or by running `castellan sidecar`)? */
export function isCastellanSidecar(c: V1Container): boolean {
  if (c.name === sidecarContainerName) return true;
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  const i = argv.findIndex((a) => a === 'castellan' || a.endsWith('/castellan') || a.endsWith('/castellan.js'));
  return i >= 0 && argv[i + 1] === 'sidecar';
}

export function planInjection(pod: V1Pod, namespace: string, s: InjectionSettings): InjectionDecision {
  if (s.namespaces.length > 0 && !s.namespaces.includes(namespace)) return { decision: 'allow', reason: `namespace ${namespace} is not watched` };
  const podAnnotations = pod.metadata?.annotations ?? {};
  const wish = injectWish(podAnnotations, pod.metadata?.labels ?? {});
  if (wish.wish === 'invalid') return { decision: 'deny', message: refusal(wish.problems) };
  if (wish.wish === 'none') return { decision: 'allow', reason: 'not opted in' };
  if (wish.wish === 'skip') return { decision: 'allow', reason: wish.reason };

  const spec = pod.spec;
  if (spec === undefined) return { decision: 'deny', message: 'the pod has no spec' };
  const inits = spec.initContainers ?? [];
  const existing = [...inits, ...spec.containers].find(isCastellanSidecar);
  if (existing !== undefined) {
    const at = inits.indexOf(existing);
    if (podAnnotations[annotations.injected] !== undefined && at > 0) {
      // Reinvoked after another webhook put init containers in front of ours: move it back first.
      return { decision: 'patch', reason: 'sidecar moved back to the front', patch: [{ op: 'add', path: '/spec/initContainers', value: [existing, ...inits.filter((c) => c !== existing)] }] };
    }
    return { decision: 'allow', reason: `the pod already has a Castellan sidecar (container ${existing.name})` };
  }

  const parsed = parseSidecarRequest(podAnnotations, s.allowNatsOverride);
  if (!parsed.ok) return { decision: 'deny', message: refusal(parsed.problems) };
  const req = parsed.request;
  const problems: string[] = [];
  const port = req.port ?? defaultSidecarPort;
  for (const c of [...inits, ...spec.containers]) {
    if ((c.ports ?? []).some((p) => p.containerPort === port)) {
      problems.push(`annotation ${annotations.port}: port ${port}${req.port === undefined ? ' (the default)' : ''} is already used by container ${c.name}; choose another port with ${annotations.port}`);
    }
  }
  const resources = mergeResources(s.resources, req, problems);
  if (problems.length > 0) return { decision: 'deny', message: refusal(problems) };

  const overrides: SidecarOverrides = { httpPort: port };
  if (req.logLevel !== undefined) overrides.logLevel = req.logLevel;
  if (resources !== undefined) overrides.resources = resources;
  const nats = req.natsUrls !== undefined || req.natsPrefix !== undefined ? { urls: req.natsUrls, prefix: req.natsPrefix } : undefined;
  const settings = { CASTELLAN_ROLE: 'client', ...natsSettings(nats, overrides, s.defaults) };
  const sidecar = sidecarContainer({ component: 'client', settings, overrides, defaults: s.defaults, native: true });

  const url: V1EnvVar = { name: 'CASTELLAN_SIDECAR_URL', value: `http://127.0.0.1:${port}` };
  const withUrl = (c: V1Container): V1Container => ((c.env ?? []).some((e) => e.name === url.name) ? c : { ...c, env: [...(c.env ?? []), url] });
  const volumes: V1Volume[] = spec.volumes ?? [];
  const patch: JsonPatchOp[] = [
    { op: 'add', path: '/spec/initContainers', value: [sidecar, ...inits.map(withUrl)] },
    { op: 'add', path: '/spec/containers', value: spec.containers.map(withUrl) },
  ];
  const missing = sidecarVolumes(s.defaults).filter((v) => !volumes.some((have) => have.name === v.name));
  if (missing.length > 0) patch.push({ op: 'add', path: '/spec/volumes', value: [...volumes, ...missing] });
  patch.push({ op: 'add', path: '/metadata/annotations', value: { ...podAnnotations, [annotations.injected]: sidecar.image ?? '' } });
  return { decision: 'patch', reason: `injected the client sidecar (opted in by ${wish.via})`, patch };
}

function refusal(problems: string[]): string {
  return `Castellan sidecar injection refused: ${problems.join('; ')}`;
}

type Resources = NonNullable<SidecarOverrides['resources']>;

/** Operator defaults, then the annotations key by key; a request above its limit is refused naming the annotation. */
function mergeResources(base: InjectionSettings['resources'], req: SidecarRequest, problems: string[]): Resources | undefined {
  const requests: Record<string, string> = { ...(base.requests ?? {}) };
  const limits: Record<string, string> = { ...(base.limits ?? {}) };
  if (req.requests.cpu !== undefined) requests.cpu = req.requests.cpu;
  if (req.requests.memory !== undefined) requests.memory = req.requests.memory;
  if (req.limits.cpu !== undefined) limits.cpu = req.limits.cpu;
  if (req.limits.memory !== undefined) limits.memory = req.limits.memory;
  for (const [resource, reqName, limName] of [
    ['cpu', annotations.cpuRequest, annotations.cpuLimit],
    ['memory', annotations.memoryRequest, annotations.memoryLimit],
  ] as const) {
    const r = requests[resource];
    const l = limits[resource];
    if (r === undefined || l === undefined) continue;
    if ((quantityValue(r) ?? 0) > (quantityValue(l) ?? Infinity)) {
      const from = (v: string | undefined, name: string) => (v !== undefined ? `annotation ${name}` : 'the operator default');
      problems.push(`annotation ${req.requests[resource] !== undefined ? reqName : limName}: the ${resource} request ${r} (${from(req.requests[resource], reqName)}) is above the ${resource} limit ${l} (${from(req.limits[resource], limName)})`);
    }
  }
  const out: Resources = {};
  if (Object.keys(requests).length > 0) out.requests = requests;
  if (Object.keys(limits).length > 0) out.limits = limits;
  return Object.keys(out).length > 0 ? out : undefined;
}
