/**
 * The Helm chart (charts/castellan) and the CRD files, without a cluster:
 * `helm lint --strict` and `helm template` succeed with the default values,
 * values.schema.json rejects unknown keys, the rendered RBAC is least-privilege
 * (no wildcards, no Secrets), the operator Deployment is hardened, and the
 * chart's crds/ are byte-identical copies of the top-level crds/.
 * (test/integration/crds.test.ts puts the CRDs in front of a real API server.)
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { projectRoot, toolPath } from '../../common/paths.ts';

const run = promisify(execFile);
const chartDir = join(projectRoot, 'charts', 'castellan');
const crdDir = join(projectRoot, 'crds');
const chartCrdDir = join(chartDir, 'crds');

interface Helm {
  ok: boolean;
  stdout: string;
  stderr: string;
}

async function helm(...args: string[]): Promise<Helm> {
  // Without a cluster helm assumes Kubernetes 1.20; the chart needs >= 1.29 (kubeVersion).
  const full = args[0] === 'template' ? [...args, '--kube-version', '1.34.4'] : args;
  try {
    const { stdout, stderr } = await run(toolPath('helm'), full, {
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
      // Keep helm away from the user's config, cache and kube contexts.
      env: { ...process.env, HELM_CONFIG_HOME: '/nonexistent', HELM_CACHE_HOME: '/nonexistent', KUBECONFIG: '/nonexistent' },
    });
    return { ok: true, stdout, stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

// Loose shapes of the rendered manifests, enough for the checks below.
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: {
    runAsNonRoot?: boolean;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
}
interface Deployment extends Manifest {
  spec: {
    replicas: number;
    template: {
      spec: {
        serviceAccountName: string;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
        containers: Container[];
      };
    };
  };
}

async function render(...extra: string[]): Promise<Manifest[]> {
  const res = await helm('template', 'castellan', chartDir, '--namespace', 'castellan-system', ...extra);
  if (!res.ok) throw new Error(`helm template failed: ${res.stderr}`);
  return parseAllDocuments(res.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function ofKind<T extends Manifest = Manifest>(docs: Manifest[], kind: string): T[] {
  return docs.filter((d) => d.kind === kind) as T[];
}

describe('Helm chart charts/castellan', () => {
  let docs: Manifest[];

  beforeAll(async () => {
    docs = await render();
  }, 60_000);

  it('passes helm lint --strict', async () => {
    const res = await helm('lint', '--strict', chartDir);
    expect(res.stdout + res.stderr).not.toMatch(/\[(ERROR|WARNING)\]/);
    expect(res.ok).toBe(true);
  }, 60_000);

  it('renders with the default values: operator, ServiceAccount, RBAC, Service, PDB', () => {
    const kinds = docs.map((d) => d.kind).sort();
    expect(kinds).toEqual(
      expect.arrayContaining(['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']),
    );
    for (const d of docs) {
      expect(d.metadata.labels?.['app.kubernetes.io/part-of']).toBe('castellan');
      if (!d.kind.startsWith('Cluster') && d.kind !== 'MutatingWebhookConfiguration') expect(d.metadata.namespace).toBe('castellan-system');
    }
  });

  it('runs a hardened, leader-elected `castellan operator` with the NATS URL from the values', async () => {
    const [dep] = ofKind<Deployment>(docs, 'Deployment');
    expect(dep).toBeDefined();
    expect(dep!.spec.replicas).toBe(2);
    const pod = dep!.spec.template.spec;
    const sa = ofKind(docs, 'ServiceAccount')[0]!;
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
    const [c] = pod.containers;
    expect([...(c!.command ?? []), ...(c!.args ?? [])].slice(0, 2)).toEqual(['castellan', 'operator']);
    expect(c!.args).toContain('--leader-elect');
    const env = Object.fromEntries((c!.env ?? []).map((e) => [e.name, e.value]));
    expect(env.CASTELLAN_NATS_URL).toBe('nats://nats.nats.svc:4222');
    expect(env.CASTELLAN_LEADER_ELECT).toBe('true');
    expect(c!.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(c!.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(c!.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c!.securityContext?.capabilities?.add ?? []).toEqual([]);

    const custom = await render('--set', 'nats.url=nats://a:4222\\,nats://b:4222', '--set', 'image.tag=9.9.9');
    const c2 = ofKind<Deployment>(custom, 'Deployment')[0]!.spec.template.spec.containers[0]!;
    expect(c2.image).toMatch(/:9\.9\.9$/);
    expect(c2.env?.find((e) => e.name === 'CASTELLAN_NATS_URL')?.value).toBe('nats://a:4222,nats://b:4222');
  }, 60_000);

  it('grants least privilege: no wildcards, no Secrets, only what the operator needs', () => {
    const roles = [...ofKind(docs, 'ClusterRole'), ...ofKind(docs, 'Role')];
    expect(roles.length).toBeGreaterThan(0);
    const granted = new Set<string>();
    for (const role of roles) {
      for (const rule of (role as unknown as { rules: PolicyRule[] }).rules) {
        for (const list of [rule.apiGroups, rule.resources, rule.verbs, rule.resourceNames, rule.nonResourceURLs]) {
          for (const item of list ?? []) expect(item).not.toContain('*');
        }
        // The one exception: the webhook's own certificate Secret, by name (test/unit/webhook-chart.test.ts).
        if ((rule.resources ?? []).includes('secrets')) expect(rule.resourceNames).toEqual(['castellan-webhook-tls']);
        expect(rule.nonResourceURLs).toBeUndefined();
        if (role.metadata.name.endsWith('-view') || role.metadata.name.endsWith('-edit')) continue; // for users, not the operator
        for (const g of rule.apiGroups ?? []) for (const r of rule.resources ?? []) for (const v of rule.verbs) granted.add(`${g}/${r}:${v}`);
      }
    }
    // Exactly what the operator calls (operator/controller/kube.ts, runtime/leader-election.ts).
    const expected = [
      'castellan.dev/durableobjects:list', 'castellan.dev/durableobjects:watch', 'castellan.dev/durableobjects:patch',
      'castellan.dev/replicatedqueues:list', 'castellan.dev/replicatedqueues:watch', 'castellan.dev/replicatedqueues:patch',
      'castellan.dev/durableobjects/status:patch', 'castellan.dev/replicatedqueues/status:patch',
      'castellan.dev/durableobjects/finalizers:update', 'castellan.dev/replicatedqueues/finalizers:update',
      'apps/statefulsets:list', 'apps/statefulsets:watch', 'apps/statefulsets:create', 'apps/statefulsets:patch', 'apps/statefulsets:delete',
      '/services:list', '/services:watch', '/services:create', '/services:patch',
      '/configmaps:list', '/configmaps:watch', '/configmaps:create', '/configmaps:patch',
      'policy/poddisruptionbudgets:list', 'policy/poddisruptionbudgets:watch', 'policy/poddisruptionbudgets:create', 'policy/poddisruptionbudgets:patch',
      '/events:create',
      'coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:update',
      // The admission webhook (by resource name): its caBundle and its certificate Secret.
      'admissionregistration.k8s.io/mutatingwebhookconfigurations:get', 'admissionregistration.k8s.io/mutatingwebhookconfigurations:update',
      '/secrets:get', '/secrets:update',
    ];
    expect([...granted].sort()).toEqual(expected.sort());
    // It never touches pods (the StatefulSet controller does).
    expect([...granted].filter((g) => g.startsWith('/pods:'))).toEqual([]);
    // Leases only in the release namespace (a Role, not the ClusterRole).
    const clusterRules = ofKind(docs, 'ClusterRole').flatMap((r) => (r as unknown as { rules: PolicyRule[] }).rules);
    expect(clusterRules.flatMap((r) => r.resources ?? [])).not.toContain('leases');
  });

  it('rejects unknown values keys through values.schema.json', async () => {
    const top = await helm('template', 'castellan', chartDir, '--set', 'replicaCont=3');
    expect(top.ok).toBe(false);
    expect(top.stderr).toMatch(/replicaCont/);
    expect(top.stderr).toMatch(/additional propert/i);
    const nested = await helm('template', 'castellan', chartDir, '--set', 'nats.urls=nats://x:4222');
    expect(nested.ok).toBe(false);
    expect(nested.stderr).toMatch(/urls/);
    const badType = await helm('template', 'castellan', chartDir, '--set', 'logLevel=loud');
    expect(badType.ok).toBe(false);
  }, 60_000);

  it('refuses several operator replicas without leader election', async () => {
    const res = await helm('template', 'castellan', chartDir, '--set', 'leaderElection.enabled=false');
    expect(res.ok).toBe(false);
    expect(res.stderr).toMatch(/leaderElection\.enabled/);
    const single = await render('--set', 'leaderElection.enabled=false', '--set', 'replicaCount=1');
    expect(ofKind(single, 'PodDisruptionBudget')).toHaveLength(0);
  }, 60_000);

  it('documents the NATS requirement (JetStream, nats-server >= 2.12, sync_interval: always)', () => {
    for (const file of ['values.yaml', join('templates', 'NOTES.txt')]) {
      const text = readFileSync(join(chartDir, file), 'utf8');
      expect(text).toMatch(/2\.12/);
      expect(text).toMatch(/sync_interval[:=] ?always/);
      expect(text).toMatch(/helm install nats nats\/nats/);
    }
  });
});

describe('CRD files shipped by the chart and in crds/', () => {
  it('ships byte-identical copies of crds/ in charts/castellan/crds/', () => {
    const top = readdirSync(crdDir).sort();
    expect(top).toEqual(['castellan.dev_durableobjects.yaml', 'castellan.dev_replicatedqueues.yaml']);
    expect(readdirSync(chartCrdDir).sort()).toEqual(top);
    for (const f of top) expect(readFileSync(join(chartCrdDir, f)).equals(readFileSync(join(crdDir, f)))).toBe(true);
  });

  it.each([
    ['castellan.dev_durableobjects.yaml', 'DurableObject', 'durableobjects', 'dobj'],
    ['castellan.dev_replicatedqueues.yaml', 'ReplicatedQueue', 'replicatedqueues', 'rq'],
  ])('%s declares castellan.dev/v1alpha1 %s', (file, kind, plural, short) => {
    const crd = parseYaml(readFileSync(join(crdDir, file), 'utf8')) as {
      metadata: { name: string };
      spec: {
        group: string;
        scope: string;
        names: { kind: string; plural: string; shortNames: string[]; categories: string[] };
        versions: { name: string; served: boolean; storage: boolean; subresources: Record<string, unknown> }[];
      };
    };
    expect(crd.metadata.name).toBe(`${plural}.castellan.dev`);
    expect(crd.spec.group).toBe('castellan.dev');
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.names).toMatchObject({ kind, plural, shortNames: [short], categories: ['castellan'] });
    expect(crd.spec.versions).toHaveLength(1);
    expect(crd.spec.versions[0]).toMatchObject({ name: 'v1alpha1', served: true, storage: true });
    expect(Object.keys(crd.spec.versions[0]!.subresources).sort()).toEqual(['scale', 'status']);
  });
});
