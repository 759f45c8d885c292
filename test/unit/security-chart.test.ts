/**
 * The chart's security block (docs/security.md): Secrets mounted read-only as
 * files for the NATS credential and TLS, the auth callout's settings and its
 * TokenReview permission, a projected ServiceAccount token, the NetworkPolicy;
 * nothing of it rendered with the defaults, and a clear failure when a
 * Secret name is missing.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { projectRoot, toolPath } from '../../common/paths.ts';

const run = promisify(execFile);
const chartDir = join(projectRoot, 'charts', 'castellan');

type Doc = { kind?: string; metadata?: { name?: string }; rules?: { resources?: string[]; verbs?: string[] }[]; spec?: Record<string, unknown> };

async function render(...sets: string[]): Promise<Doc[]> {
  const { stdout } = await run(toolPath('helm'), ['template', 't', chartDir, '--kube-version', '1.34.4', ...sets.flatMap((s) => ['--set', s])], {
    timeout: 60_000,
    env: { ...process.env, HELM_CONFIG_HOME: '/nonexistent', HELM_CACHE_HOME: '/nonexistent', KUBECONFIG: '/nonexistent' },
  });
  return parseAllDocuments(stdout).map((d) => d.toJSON() as Doc).filter((d) => d !== null);
}

interface Container {
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
function operatorPod(docs: Doc[]): { container: Container; volumes: { name: string; secret?: { secretName: string; items?: { key: string }[] }; projected?: unknown }[] } {
  const dep = docs.find((d) => d.kind === 'Deployment');
  const spec = (dep?.spec?.template as { spec: { containers: Container[]; volumes: { name: string }[] } }).spec;
  return { container: spec.containers[0]!, volumes: spec.volumes };
}

describe('chart security block', () => {
  it('renders nothing extra with the defaults', async () => {
    const docs = await render();
    const { container, volumes } = operatorPod(docs);
    expect(container.env?.filter((e) => /CASTELLAN_(NATS_(CREDS|NKEY|USER|PASSWORD|TOKEN|SA_TOKEN|TLS|ALLOWED)|AUTH_CALLOUT)/.test(e.name))).toEqual([]);
    expect(volumes.map((v) => v.name)).toEqual(['tmp']);
    expect(docs.some((d) => d.kind === 'NetworkPolicy')).toBe(false);
  });

  it('mounts the creds and TLS Secrets read-only and points the SPEC variables at them', async () => {
    const docs = await render('security.natsAuth.method=creds', 'security.natsAuth.secretName=nats-creds', 'security.natsTls.secretName=nats-tls', 'security.natsTls.clientCert=true', 'security.allowedNatsUrls[0]=nats://b:4222');
    const { container, volumes } = operatorPod(docs);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      CASTELLAN_NATS_CREDS: '/etc/castellan/nats-auth/user.creds',
      CASTELLAN_NATS_TLS_CA: '/etc/castellan/nats-tls/ca.crt',
      CASTELLAN_NATS_TLS_CERT: '/etc/castellan/nats-tls/tls.crt',
      CASTELLAN_NATS_TLS_KEY: '/etc/castellan/nats-tls/tls.key',
      CASTELLAN_NATS_ALLOWED_URLS: 'nats://b:4222',
    });
    expect(container.volumeMounts?.filter((m) => m.name.startsWith('nats-')).every((m) => m.readOnly === true)).toBe(true);
    expect(volumes.filter((v) => v.secret !== undefined).map((v) => v.secret?.secretName)).toEqual(['nats-creds', 'nats-tls']);
  });

  it('takes a token or password from the Secret by reference, never as a value', async () => {
    const docs = await render('security.natsAuth.method=userPassword', 'security.natsAuth.secretName=nats-pw', 'security.natsAuth.user=castellan');
    const pw = operatorPod(docs).container.env?.find((e) => e.name === 'CASTELLAN_NATS_PASSWORD');
    expect(pw).toEqual({ name: 'CASTELLAN_NATS_PASSWORD', valueFrom: { secretKeyRef: { name: 'nats-pw', key: 'password' } } });
  });

  it('the auth callout: issuer seed mounted, admins = the operator ServiceAccount, TokenReview create only', async () => {
    const docs = await render('security.authCallout.enabled=true', 'security.authCallout.secretName=callout', 'security.natsAuth.method=serviceAccountToken');
    const { container, volumes } = operatorPod(docs);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      CASTELLAN_AUTH_CALLOUT: 'true',
      CASTELLAN_AUTH_CALLOUT_ISSUER_SEED: '/etc/castellan/auth-callout/issuer.seed',
      CASTELLAN_AUTH_CALLOUT_ADMINS: 'system:serviceaccount:default:t-castellan',
      CASTELLAN_NATS_SA_TOKEN: '/var/run/secrets/castellan/token',
    });
    expect(volumes.find((v) => v.name === 'castellan-token')?.projected).toEqual({ sources: [{ serviceAccountToken: { audience: 'castellan', expirationSeconds: 3600, path: 'token' } }] });
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata?.name === 't-castellan-auth-callout');
    expect(role?.rules).toEqual([{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }]);
  });

  it('the auth callout in NATS operator mode: callout creds, operator signing key and system creds from the Secret, no password', async () => {
    const docs = await render('security.authCallout.enabled=true', 'security.authCallout.secretName=callout', 'security.authCallout.operatorMode=true', 'security.natsAuth.method=serviceAccountToken');
    const { container, volumes } = operatorPod(docs);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      CASTELLAN_AUTH_CALLOUT_ISSUER_SEED: '/etc/castellan/auth-callout/issuer.seed',
      CASTELLAN_AUTH_CALLOUT_NATS_CREDS: '/etc/castellan/auth-callout/callout.creds',
      CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED: '/etc/castellan/auth-callout/operator-signing.seed',
      CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS: '/etc/castellan/auth-callout/system.creds',
      CASTELLAN_AUTH_CALLOUT_XKEY_SEED: '/etc/castellan/auth-callout/xkey.seed',
    });
    expect(env).not.toHaveProperty('CASTELLAN_AUTH_CALLOUT_NATS_PASSWORD');
    expect(volumes.find((v) => v.name === 'auth-callout')?.secret?.items?.map((i) => i.key)).toEqual(['issuer.seed', 'callout.creds', 'operator-signing.seed', 'system.creds', 'xkey.seed']);
  });

  it('fails clearly when a Secret name is missing, and renders the NetworkPolicy', async () => {
    await expect(render('security.authCallout.enabled=true')).rejects.toThrow(/security.authCallout.secretName is required/);
    await expect(render('security.natsAuth.method=token')).rejects.toThrow(/security.natsAuth.secretName is required/);
    const docs = await render('security.networkPolicy.enabled=true', 'security.networkPolicy.allowFrom[0].namespaceSelector.matchLabels.name=monitoring');
    const np = docs.find((d) => d.kind === 'NetworkPolicy');
    expect(np?.spec).toMatchObject({ policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { name: 'monitoring' } } }], ports: [{ port: 8080, protocol: 'TCP' }] }] });
  });
});
