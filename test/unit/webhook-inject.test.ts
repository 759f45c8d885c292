/**
 * The sidecar-injection decision (operator/webhook/inject.ts, annotations.ts,
 * review.ts), pure: which pods get the client sidecar, exactly which sidecar
 * (the same builder as the object hosts'), which are left alone, and which are
 * refused with a message naming the annotation.
 */
import { describe, expect, it } from '@jest/globals';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { sidecarContainer, type OperatorDefaults } from '../../operator/desired/common.ts';
import { annotations } from '../../operator/webhook/annotations.ts';
import { planInjection, type InjectionSettings, type JsonPatchOp } from '../../operator/webhook/inject.ts';
import { admissionResponse, admissionReviewSchema, isPodCreate, podOf } from '../../operator/webhook/review.ts';

const defaults: OperatorDefaults = { natsUrls: ['nats://nats-0.nats:4222', 'nats://nats-1.nats:4222'], sidecarImage: 'registry.example/castellan:1.2.3', sidecarImagePullPolicy: 'IfNotPresent', sidecarLogLevel: 'info' };
const settings: InjectionSettings = { defaults, resources: { requests: { cpu: '25m', memory: '64Mi' }, limits: { memory: '256Mi' } }, allowNatsOverride: false, namespaces: [] };

function pod(meta: { annotations?: Record<string, string>; labels?: Record<string, string> } = {}, spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'caller', ...meta },
    spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }], ...spec },
  };
}
const annotated = (extra: Record<string, string> = {}) => pod({ annotations: { [annotations.inject]: 'true', ...extra } });

/** Applies the webhook's patch (only `add` of whole members, as the planner emits). */
function apply(p: V1Pod, patch: JsonPatchOp[]): V1Pod {
  const out = structuredClone(p) as unknown as Record<string, Record<string, unknown>>;
  for (const op of patch) {
    expect(op.op).toBe('add');
    const [, top, key] = op.path.split('/') as [string, string, string];
    expect(op.path.split('/')).toHaveLength(3);
    out[top] = { ...(out[top] ?? {}), [key]: op.value };
  }
  return out as unknown as V1Pod;
}

function injected(p: V1Pod, s: InjectionSettings = settings, ns = 'apps'): V1Pod {
  const d = planInjection(p, ns, s);
  if (d.decision !== 'patch') throw new Error(`expected a patch, got ${JSON.stringify(d)}`);
  return apply(p, d.patch);
}

function denied(p: V1Pod, s: InjectionSettings = settings): string {
  const d = planInjection(p, 'apps', s);
  if (d.decision !== 'deny') throw new Error(`expected a refusal, got ${d.decision}`);
  return d.message;
}

describe('sidecar injection', () => {
  it('adds the client sidecar as the first, native init container, built like the object hosts\' sidecar', () => {
    const before = pod({ annotations: { [annotations.inject]: 'true' } }, { initContainers: [{ name: 'migrate', image: 'migrate:1' }] });
    const after = injected(before);
    const inits = after.spec?.initContainers ?? [];
    expect(inits.map((c) => c.name)).toEqual(['castellan-sidecar', 'migrate']);
    const sidecar = inits[0] as V1Container;
    // One builder: exactly what operator/desired/common.ts gives, in the client role.
    const overrides = { httpPort: 3600, resources: { requests: { cpu: '25m', memory: '64Mi' }, limits: { memory: '256Mi' } } };
    const expected = sidecarContainer({
      component: 'client',
      settings: { CASTELLAN_ROLE: 'client', CASTELLAN_NATS_URL: 'nats://nats-0.nats:4222,nats://nats-1.nats:4222', CASTELLAN_LOG_LEVEL: 'info' },
      overrides,
      defaults,
      native: true,
    });
    expect(sidecar).toEqual(expected);
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.image).toBe('registry.example/castellan:1.2.3');
    expect(sidecar.command).toEqual(['castellan', 'sidecar']);
    expect(sidecar.env).toEqual(
      expect.arrayContaining([
        { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
        { name: 'CASTELLAN_HTTP_PORT', value: '3600' },
        { name: 'CASTELLAN_ROLE', value: 'client' },
        { name: 'CASTELLAN_NATS_URL', value: 'nats://nats-0.nats:4222,nats://nats-1.nats:4222' },
        { name: 'CASTELLAN_LOG_LEVEL', value: 'info' },
      ]),
    );
    expect((sidecar.env ?? []).map((e) => e.name).filter((n) => /CLASS|QUEUE|APP_PORT/.test(n))).toEqual([]);
    // Probes are httpGet on the sidecar's admin port (pod IP); the API stays on loopback.
    expect(sidecar.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'castellan-admin', scheme: 'HTTP' });
    expect(sidecar.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'castellan-admin', scheme: 'HTTP' });
    expect(sidecar.livenessProbe).toBeDefined();
    expect(sidecar.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(sidecar.resources).toEqual({ requests: { cpu: '25m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    // Its /tmp volume, the app's sidecar URL (also for the later init container), the marker annotation.
    expect(after.spec?.volumes).toEqual([{ name: 'castellan-tmp', emptyDir: { sizeLimit: '64Mi' } }]);
    expect(after.spec?.containers[0]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://127.0.0.1:3600' }]);
    expect(inits[1]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://127.0.0.1:3600' }]);
    expect(after.metadata?.annotations).toEqual({ [annotations.inject]: 'true', [annotations.injected]: 'registry.example/castellan:1.2.3' });
    // The rest of the pod is the user's.
    expect(after.spec?.containers[0]).toMatchObject({ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] });
  });

  it('takes port, log level, resources and (where allowed) NATS from annotations', () => {
    const allow = { ...settings, allowNatsOverride: true };
    const after = injected(
      annotated({
        [annotations.port]: '3700',
        [annotations.logLevel]: 'debug',
        [annotations.cpuRequest]: '100m',
        [annotations.cpuLimit]: '1',
        [annotations.memoryLimit]: '512Mi',
        [annotations.natsUrl]: 'nats://other:4222, tls://other-1:4222',
        [annotations.natsPrefix]: 'team-a',
      }),
      allow,
    );
    const s = after.spec?.initContainers?.[0] as V1Container;
    const env = Object.fromEntries((s.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ CASTELLAN_HTTP_PORT: '3700', CASTELLAN_LOG_LEVEL: 'debug', CASTELLAN_NATS_URL: 'nats://other:4222,tls://other-1:4222', CASTELLAN_NATS_PREFIX: 'team-a' });
    expect(s.ports).toEqual([
      { name: 'castellan', containerPort: 3700, protocol: 'TCP' },
      { name: 'castellan-admin', containerPort: 3601, protocol: 'TCP' },
    ]);
    expect(s.resources).toEqual({ requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    expect(after.spec?.containers[0]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://127.0.0.1:3700' }]);
  });

  it('is opted into by the label too; a CASTELLAN_SIDECAR_URL the app sets stays', () => {
    const p = pod({ labels: { [annotations.inject]: 'true' } }, { containers: [{ name: 'app', image: 'a', env: [{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://elsewhere' }] }] });
    const after = injected(p);
    expect(after.spec?.initContainers?.[0]?.name).toBe('castellan-sidecar');
    expect(after.spec?.containers[0]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://elsewhere' }]);
  });

  it('leaves pods alone that did not opt in, opted out, live in unwatched namespaces or already have a sidecar', () => {
    expect(planInjection(pod(), 'apps', settings)).toMatchObject({ decision: 'allow', reason: 'not opted in' });
    expect(planInjection(pod({ annotations: { [annotations.inject]: 'false', [annotations.port]: 'nonsense' } }), 'apps', settings).decision).toBe('allow');
    expect(planInjection(pod({ labels: { [annotations.inject]: 'false' } }), 'apps', settings).decision).toBe('allow');
    expect(planInjection(annotated(), 'elsewhere', { ...settings, namespaces: ['apps'] })).toMatchObject({ decision: 'allow', reason: 'namespace elsewhere is not watched' });
    expect(planInjection(annotated(), 'apps', { ...settings, namespaces: ['apps'] }).decision).toBe('patch');

    // Injected once: a second pass changes nothing.
    const once = injected(annotated());
    expect(planInjection(once, 'apps', settings)).toMatchObject({ decision: 'allow' });
    // Hand-written, by name or by command, as a native sidecar or a plain container.
    const byName = pod({ annotations: { [annotations.inject]: 'true' } }, { containers: [{ name: 'app', image: 'a' }, { name: 'castellan-sidecar', image: 'mine' }] });
    expect(planInjection(byName, 'apps', settings)).toMatchObject({ decision: 'allow', reason: expect.stringContaining('castellan-sidecar') });
    const byCommand = pod({ annotations: { [annotations.inject]: 'true' } }, { initContainers: [{ name: 'proxy', image: 'mine', command: ['/usr/local/bin/castellan'], args: ['sidecar', '--role', 'client'], restartPolicy: 'Always' }] });
    expect(planInjection(byCommand, 'apps', settings)).toMatchObject({ decision: 'allow', reason: expect.stringContaining('proxy') });
  });

  it('on reinvocation moves its own sidecar back in front of init containers a later webhook added', () => {
    const once = injected(annotated());
    const other = { ...once, spec: { ...once.spec!, initContainers: [{ name: 'istio-init', image: 'x' }, ...(once.spec?.initContainers ?? [])] } };
    const again = injected(other);
    expect(again.spec?.initContainers?.map((c) => c.name)).toEqual(['castellan-sidecar', 'istio-init']);
    // Not for a hand-written one (no marker annotation): the user chose the order.
    const hand = pod({ annotations: { [annotations.inject]: 'true' } }, { initContainers: [{ name: 'first', image: 'x' }, { name: 'castellan-sidecar', image: 'mine', restartPolicy: 'Always' }] });
    expect(planInjection(hand, 'apps', settings).decision).toBe('allow');
  });

  it.each([
    [{ [annotations.inject]: 'yes' }, 'annotation castellan.dev/inject: must be "true" or "false", got "yes"'],
    [{ [annotations.inject]: 'True' }, 'annotation castellan.dev/inject'],
    [{ [annotations.inject]: 'true', [annotations.port]: 'http' }, 'annotation castellan.dev/sidecar-port: must be a port number'],
    [{ [annotations.inject]: 'true', [annotations.port]: '70000' }, 'annotation castellan.dev/sidecar-port'],
    [{ [annotations.inject]: 'true', [annotations.port]: '0' }, 'annotation castellan.dev/sidecar-port'],
    [{ [annotations.inject]: 'true', [annotations.port]: '8080' }, 'annotation castellan.dev/sidecar-port: port 8080 is already used by container app'],
    [{ [annotations.inject]: 'true', [annotations.logLevel]: 'loud' }, 'annotation castellan.dev/sidecar-log-level: must be one of debug, info, warn, error'],
    [{ [annotations.inject]: 'true', [annotations.cpuLimit]: 'lots' }, 'annotation castellan.dev/sidecar-cpu-limit: must be a Kubernetes quantity'],
    [{ [annotations.inject]: 'true', [annotations.memoryRequest]: '-1Mi' }, 'annotation castellan.dev/sidecar-memory-request'],
    [{ [annotations.inject]: 'true', [annotations.memoryRequest]: '1Gi' }, 'annotation castellan.dev/sidecar-memory-request: the memory request 1Gi (annotation castellan.dev/sidecar-memory-request) is above the memory limit 256Mi (the operator default)'],
    [{ [annotations.inject]: 'true', [annotations.natsUrl]: 'nats://x:4222' }, 'annotation castellan.dev/nats-url: NATS overrides are not allowed by this operator'],
    [{ [annotations.inject]: 'true', [annotations.natsPrefix]: 'x' }, 'annotation castellan.dev/nats-prefix: NATS overrides are not allowed'],
    [{ [annotations.inject]: 'true', 'castellan.dev/sidecar-prot': '3700' }, 'annotation castellan.dev/sidecar-prot: unknown Castellan annotation'],
  ])('refuses %j naming the annotation', (a, message) => {
    const msg = denied(pod({ annotations: a }));
    expect(msg).toContain(message);
    expect(msg).toMatch(/^Castellan sidecar injection refused: /);
  });

  it('refuses invalid NATS overrides even where they are allowed, a bad label, and a label that contradicts the annotation', () => {
    const allow = { ...settings, allowNatsOverride: true };
    expect(denied(annotated({ [annotations.natsUrl]: 'http://x:4222' }), allow)).toContain('annotation castellan.dev/nats-url: must be comma-separated nats://');
    expect(denied(pod({ labels: { [annotations.inject]: 'on' } }))).toContain('label castellan.dev/inject: must be "true" or "false", got "on"');
    expect(denied(pod({ labels: { [annotations.inject]: 'true' }, annotations: { [annotations.inject]: 'false' } }))).toContain('disagree');
    // Every problem at once, so one round trip fixes the pod.
    const msg = denied(annotated({ [annotations.port]: 'x', [annotations.logLevel]: 'y' }));
    expect(msg).toContain(annotations.port);
    expect(msg).toContain(annotations.logLevel);
  });
});

describe('AdmissionReview', () => {
  const review = (object: unknown, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'apps', object, ...extra },
  });

  it('parses a pod creation (null lists included) and answers with a base64 JSON patch, a refusal or a plain allow', () => {
    const parsed = admissionReviewSchema.parse(review({ metadata: { generateName: 'web-', annotations: { [annotations.inject]: 'true' }, labels: null }, spec: { containers: [{ name: 'app', image: 'a' }], initContainers: null } }));
    expect(isPodCreate(parsed)).toBe(true);
    const p = podOf(parsed);
    expect(p.spec?.initContainers).toBeUndefined();
    const d = planInjection(p, 'apps', settings);
    const res = admissionResponse('u-1', d);
    expect(res.response).toMatchObject({ uid: 'u-1', allowed: true, patchType: 'JSONPatch' });
    const patch = JSON.parse(Buffer.from(res.response.patch ?? '', 'base64').toString('utf8')) as JsonPatchOp[];
    expect(patch.map((o) => o.path)).toEqual(['/spec/initContainers', '/spec/containers', '/spec/volumes', '/metadata/annotations']);

    const bad = admissionResponse('u-2', planInjection(podOf(admissionReviewSchema.parse(review({ metadata: { annotations: { [annotations.inject]: 'maybe' } }, spec: { containers: [{ name: 'a' }] } }))), 'apps', settings));
    expect(bad.response).toEqual({ uid: 'u-2', allowed: false, status: { code: 400, reason: 'BadRequest', message: expect.stringContaining('castellan.dev/inject') } });
    expect(admissionResponse('u-3', { decision: 'allow', reason: 'x' }).response).toEqual({ uid: 'u-3', allowed: true });
  });

  it('recognises what is not a pod creation, and rejects what is not an AdmissionReview', () => {
    expect(isPodCreate(admissionReviewSchema.parse(review({ spec: { containers: [] } }, { operation: 'UPDATE' })))).toBe(false);
    expect(isPodCreate(admissionReviewSchema.parse(review(null, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } })))).toBe(false);
    expect(admissionReviewSchema.safeParse({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} }).success).toBe(false);
    expect(admissionReviewSchema.safeParse(review({ spec: { containers: 'no' } })).success).toBe(false);
  });
});
