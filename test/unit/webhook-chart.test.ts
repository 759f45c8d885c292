/**
 * The chart's admission webhook (charts/castellan/templates/webhook*.yaml),
 * rendered with `helm template`: the MutatingWebhookConfiguration's policies
 * and selectors (docs/webhook.md explains each), its Service, the Secret the
 * operator fills, the operator's environment and port, least-privilege RBAC,
 * the cert-manager variant, the out-of-cluster URL variant, and nothing at
 * all when the webhook is disabled.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { loadOperatorConfig } from '../../operator/config.ts';

const run = promisify(execFile);
const chartDir = join(projectRoot, 'charts', 'castellan');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [key: string]: unknown;
}
interface Webhook {
  name: string;
  clientConfig: { service?: { name: string; namespace: string; path: string; port: number }; url?: string; caBundle?: string };
  rules: { operations: string[]; apiGroups: string[]; apiVersions: string[]; resources: string[]; scope: string }[];
  namespaceSelector: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
  objectSelector: { matchExpressions: { key: string; operator: string; values?: string[] }[] };
  failurePolicy: string;
  sideEffects: string;
  reinvocationPolicy: string;
  timeoutSeconds: number;
  admissionReviewVersions: string[];
  matchPolicy: string;
}
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

async function helm(...args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  try {
    // The chart requires Kubernetes >= 1.29; without a cluster helm assumes 1.20.
    const full = args[0] === 'template' ? [...args, '--kube-version', '1.34.4'] : args;
    const { stdout, stderr } = await run(toolPath('helm'), full, {
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, HELM_CONFIG_HOME: '/nonexistent', HELM_CACHE_HOME: '/nonexistent', KUBECONFIG: '/nonexistent' },
    });
    return { ok: true, stdout, stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

async function render(...extra: string[]): Promise<Manifest[]> {
  const res = await helm('template', 'castellan', chartDir, '--namespace', 'castellan-system', ...extra);
  if (!res.ok) throw new Error(`helm template failed: ${res.stderr}`);
  return parseAllDocuments(res.stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

const find = (docs: Manifest[], kind: string, name?: string): Manifest | undefined => docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
const webhooksOf = (docs: Manifest[]): Webhook[] => (find(docs, 'MutatingWebhookConfiguration')?.webhooks ?? []) as Webhook[];
const operatorEnv = (docs: Manifest[]): Record<string, string> => {
  const dep = find(docs, 'Deployment') as unknown as { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } };
  return Object.fromEntries(dep.spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value ?? '']));
};

describe('chart: the sidecar-injection webhook', () => {
  let docs: Manifest[];
  beforeAll(async () => {
    docs = await render();
  }, 60_000);

  it('declares two webhooks on pod CREATE: label opt-in fails closed, annotation opt-in fails open', () => {
    const mwc = find(docs, 'MutatingWebhookConfiguration');
    expect(mwc?.metadata.name).toBe('castellan-webhook');
    const [strict, open] = webhooksOf(docs);
    for (const w of [strict!, open!]) {
      expect(w.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
      expect(w).toMatchObject({ sideEffects: 'None', reinvocationPolicy: 'IfNeeded', timeoutSeconds: 5, admissionReviewVersions: ['v1'], matchPolicy: 'Equivalent' });
      expect(w.clientConfig).toEqual({ service: { name: 'castellan-webhook', namespace: 'castellan-system', path: '/mutate-pods', port: 443 } });
      // The caBundle is the operator's to set (and Helm must not reset it on upgrade).
      expect(w.clientConfig.caBundle).toBeUndefined();
      // Never the release's own namespace (the operator must not depend on itself), nor kube-system.
      expect(w.namespaceSelector.matchExpressions).toEqual([{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['castellan-system', 'kube-system', 'kube-node-lease', 'kube-public'] }]);
    }
    expect(strict).toMatchObject({ name: 'strict.inject.castellan.dev', failurePolicy: 'Fail' });
    expect(strict!.objectSelector.matchExpressions).toEqual([
      { key: 'castellan.dev/inject', operator: 'Exists' },
      { key: 'castellan.dev/inject', operator: 'NotIn', values: ['false'] },
    ]);
    expect(open).toMatchObject({ name: 'inject.castellan.dev', failurePolicy: 'Ignore' });
    expect(open!.objectSelector.matchExpressions).toEqual([{ key: 'castellan.dev/inject', operator: 'DoesNotExist' }]);
  });

  it('serves through a Service on the operator pods\' webhook port, with an empty Secret for the operator to fill', () => {
    const svc = find(docs, 'Service', 'castellan-webhook') as unknown as { spec: { selector: Record<string, string>; ports: { port: number; targetPort: string }[] } };
    expect(svc.spec.ports).toEqual([{ name: 'https-webhook', port: 443, targetPort: 'webhook', protocol: 'TCP' }]);
    expect(svc.spec.selector['app.kubernetes.io/component']).toBe('operator');
    const secret = find(docs, 'Secret', 'castellan-webhook-tls');
    expect(secret).toMatchObject({ type: 'Opaque', metadata: { namespace: 'castellan-system' } });
    expect(secret?.data).toBeUndefined();
    const dep = find(docs, 'Deployment') as unknown as { spec: { template: { spec: { containers: { ports: { name: string; containerPort: number }[] }[] } } } };
    expect(dep.spec.template.spec.containers[0]!.ports).toContainEqual({ name: 'webhook', containerPort: 9443, protocol: 'TCP' });
  });

  it('gives the operator a webhook configuration it accepts', () => {
    const env = operatorEnv(docs);
    expect(env).toMatchObject({
      CASTELLAN_WEBHOOK_ENABLED: 'true',
      CASTELLAN_WEBHOOK_HOST: '0.0.0.0',
      CASTELLAN_WEBHOOK_PORT: '9443',
      CASTELLAN_WEBHOOK_CERTIFICATES: 'operator',
      CASTELLAN_WEBHOOK_SECRET: 'castellan-webhook-tls',
      CASTELLAN_WEBHOOK_CONFIGURATION: 'castellan-webhook',
      CASTELLAN_WEBHOOK_DNS_NAMES: 'castellan-webhook,castellan-webhook.castellan-system,castellan-webhook.castellan-system.svc,castellan-webhook.castellan-system.svc.cluster.local',
    });
    const config = loadOperatorConfig({}, { ...env, CASTELLAN_LEADER_ELECTION_NAMESPACE: 'castellan-system' });
    expect(config.webhook).toMatchObject({
      enabled: true,
      port: 9443,
      certificates: 'operator',
      dnsNames: ['castellan-webhook', 'castellan-webhook.castellan-system', 'castellan-webhook.castellan-system.svc', 'castellan-webhook.castellan-system.svc.cluster.local'],
      caValidity: 1825 * 86_400_000,
      certValidity: 90 * 86_400_000,
      allowNatsOverride: false,
      sidecarResources: { requests: { cpu: '25m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    });
  });

  it('grants only this Secret and this webhook configuration, by name', () => {
    const roles = docs.filter((d) => (d.kind === 'Role' || d.kind === 'ClusterRole') && d.metadata.name === 'castellan-webhook');
    const rules = roles.flatMap((r) => (r as unknown as { rules: Rule[] }).rules);
    expect(rules).toEqual(
      expect.arrayContaining([
        { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: ['castellan-webhook'], verbs: ['get', 'update'] },
        { apiGroups: [''], resources: ['secrets'], resourceNames: ['castellan-webhook-tls'], verbs: ['get', 'update'] },
      ]),
    );
    expect(rules).toHaveLength(2);
    expect(find(docs, 'ClusterRoleBinding', 'castellan-webhook')).toBeDefined();
    expect(find(docs, 'RoleBinding', 'castellan-webhook')?.metadata.namespace).toBe('castellan-system');
  });

  it('limits the webhook to the watched namespaces when watchNamespaces is set', async () => {
    const d = await render('--set', 'watchNamespaces={apps,jobs}');
    for (const w of webhooksOf(d)) {
      expect(w.namespaceSelector.matchExpressions).toEqual([
        { key: 'kubernetes.io/metadata.name', operator: 'In', values: ['apps', 'jobs'] },
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['castellan-system', 'kube-system', 'kube-node-lease', 'kube-public'] },
      ]);
    }
  }, 60_000);

  it('with cert-manager: a Certificate for the Service names, caBundle injected by cert-manager, no Secret of ours, no update rights', async () => {
    const d = await render('--set', 'webhook.certificates=cert-manager');
    expect(find(d, 'MutatingWebhookConfiguration')?.metadata.annotations).toEqual({ 'cert-manager.io/inject-ca-from': 'castellan-system/castellan-webhook' });
    expect(find(d, 'Issuer', 'castellan-webhook')).toMatchObject({ spec: { selfSigned: {} } });
    expect(find(d, 'Certificate', 'castellan-webhook')).toMatchObject({
      spec: { secretName: 'castellan-webhook-tls', issuerRef: { name: 'castellan-webhook', kind: 'Issuer' }, dnsNames: expect.arrayContaining(['castellan-webhook.castellan-system.svc']) },
    });
    expect(find(d, 'Secret', 'castellan-webhook-tls')).toBeUndefined();
    expect(find(d, 'ClusterRole', 'castellan-webhook')).toBeUndefined();
    expect((find(d, 'Role', 'castellan-webhook') as unknown as { rules: Rule[] }).rules).toEqual([{ apiGroups: [''], resources: ['secrets'], resourceNames: ['castellan-webhook-tls'], verbs: ['get'] }]);
    expect(operatorEnv(d).CASTELLAN_WEBHOOK_CERTIFICATES).toBe('cert-manager');

    const own = await render('--set', 'webhook.certificates=cert-manager', '--set', 'webhook.certManager.issuerRef.name=corp-ca', '--set', 'webhook.certManager.issuerRef.kind=ClusterIssuer');
    expect(find(own, 'Issuer')).toBeUndefined();
    expect(find(own, 'Certificate')).toMatchObject({ spec: { issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } } });
  }, 60_000);

  it('calls webhook.url instead of the Service for an operator outside the cluster', async () => {
    const d = await render('--set', 'webhook.url=https://127.0.0.1:9443');
    for (const w of webhooksOf(d)) expect(w.clientConfig).toEqual({ url: 'https://127.0.0.1:9443/mutate-pods' });
    expect(find(d, 'Service', 'castellan-webhook')).toBeUndefined();
  }, 60_000);

  it('renders nothing of the webhook when disabled, and refuses bad webhook values', async () => {
    const d = await render('--set', 'webhook.enabled=false');
    expect(d.filter((m) => m.metadata.name.startsWith('castellan-webhook'))).toEqual([]);
    expect(Object.keys(operatorEnv(d)).filter((k) => k.startsWith('CASTELLAN_WEBHOOK_'))).toEqual([]);
    for (const bad of ['webhook.certificates=vault', 'webhook.timeoutSeconds=60', 'webhook.failurePolicy=Fail', 'webhook.url=http://insecure:80']) {
      const res = await helm('template', 'castellan', chartDir, '--set', bad);
      expect([bad, res.ok]).toEqual([bad, false]);
    }
  }, 120_000);
});
