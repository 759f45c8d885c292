/**
 * The sidecar-injection webhook against a real kube-apiserver (authorization
 * and admission on). Two operators run in this process: `a` leads (it keeps
 * the certificates), `b` does not; the chart's own MutatingWebhookConfiguration
 * (rendered with `webhook.url`) sends every admission review to `b` over TLS
 * at 127.0.0.1, so `b` proves that a non-leader serves with the leader's
 * certificates. Everything is checked on what the API server stored:
 * - annotated pods, labeled pods and a Deployment's pods get exactly the
 *   expected sidecar; a burst of pods at once all get it;
 * - unannotated, `false`, already-injected and hand-written-sidecar pods and
 *   pods in the operator's namespace are stored unchanged;
 * - bad annotations are refused with a message naming the annotation;
 * - certificates rotate (serving certificates every few seconds, the CA once)
 *   while pods are created, without one failed admission;
 * - with the webhook down: unrelated and annotated pods are created unchanged,
 *   labeled pods are refused (docs/webhook.md);
 * - `helm install` creates the webhook, its Service, Secret and RBAC, and
 *   `helm uninstall` leaves no webhook configuration behind.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/logger.ts';
import { freePorts, waitFor } from '../../common/net.ts';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator, operatorDefaults } from '../../operator/operator.ts';
import { annotations } from '../../operator/webhook/annotations.ts';
import { planInjection, type JsonPatchOp } from '../../operator/webhook/inject.ts';
import { splitPem } from '../../operator/webhook/certs/x509.ts';
import { installCrds, startKube, type TestKube } from '../harness/kube.ts';

const run = promisify(execFile);
const chart = join(projectRoot, 'charts', 'castellan');
const system = 'castellan-system';
const apps = 'apps';
const image = 'registry.example/castellan:9.9.9';

describe('admission webhook on a real API server', () => {
  let kube: TestKube;
  let core: k8s.CoreV1Api;
  const operators = new Map<string, Operator>();
  let portB = 0;
  const dir = mkdtempSync(join(tmpdir(), 'castellan-webhook-'));

  const helm = async (...args: string[]): Promise<string> => {
    const { stdout } = await run(toolPath('helm'), args, {
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, KUBECONFIG: kube.kubeconfig, HELM_CONFIG_HOME: join(dir, 'helm-config'), HELM_CACHE_HOME: join(dir, 'helm-cache'), HELM_DATA_HOME: join(dir, 'helm-data') },
    });
    return stdout;
  };

  function config(identity: string, port: number) {
    return loadOperatorConfig(
      {
        identity,
        nats: { urls: ['nats://127.0.0.1:1'] },
        http: { port: 0 },
        // Generous: a loaded machine must not move the leadership in the middle of the test.
        leaderElection: { enabled: true, namespace: system, lease: 'castellan', leaseDuration: '20s', renewDeadline: '15s', retryPeriod: '2s' },
        sidecar: { image, imagePullPolicy: 'IfNotPresent', logLevel: 'info' },
        webhook: {
          enabled: true,
          host: '127.0.0.1',
          port,
          ipAddresses: ['127.0.0.1'],
          namespace: system,
          secretName: 'castellan-webhook-tls',
          configurationName: 'castellan-webhook',
          // Short lives, so that rotations happen during this test: a new serving certificate
          // every ~14 s, a new CA after ~40 s.
          caValidity: '60s',
          certValidity: '20s',
          caPropagation: '2s',
          checkInterval: '300ms',
          sidecarResources: { requests: { cpu: '25m', memory: '64Mi' }, limits: { memory: '256Mi' } },
        },
      },
      {},
    );
  }

  async function startOperator(identity: string, port: number): Promise<Operator> {
    const op = new Operator({ config: config(identity, port), kc: kube.kc, log: logger(`test.operator.${identity}`) });
    operators.set(identity, op);
    await op.start();
    await waitFor(`operator ${identity} to serve admission`, async () => (op.webhook?.server.serving() === true ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    return op;
  }

  const pod = (name: string, meta: { annotations?: Record<string, string>; labels?: Record<string, string> } = {}, spec: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...meta },
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ containerPort: 8080 }] }], ...spec },
  });

  /** Creates the pod and returns what the API server stored (read back, not the create response). */
  async function create(p: k8s.V1Pod, namespace = apps): Promise<k8s.V1Pod> {
    await core.createNamespacedPod({ namespace, body: p });
    return core.readNamespacedPod({ name: p.metadata?.name ?? '', namespace });
  }

  async function refusal(p: k8s.V1Pod, namespace = apps): Promise<string> {
    try {
      await core.createNamespacedPod({ namespace, body: p });
    } catch (err) {
      const e = err as { code?: number; body?: unknown };
      let body = e.body;
      if (typeof body === 'string') body = JSON.parse(body) as unknown;
      return `${e.code ?? ''} ${(body as { message?: string } | undefined)?.message ?? JSON.stringify(body)}`;
    }
    throw new Error(`pod ${p.metadata?.name} was created`);
  }

  /** The sidecar the webhook must have added: planned locally from the same pod and configuration. */
  function expectedSidecar(p: k8s.V1Pod): k8s.V1Container {
    const c = config('x', 1);
    const d = planInjection(p, apps, { defaults: operatorDefaults(c), resources: c.webhook.sidecarResources, allowNatsOverride: false, namespaces: [] });
    if (d.decision !== 'patch') throw new Error(`no patch planned: ${JSON.stringify(d)}`);
    const inits = (d.patch.find((o: JsonPatchOp) => o.path === '/spec/initContainers')?.value ?? []) as k8s.V1Container[];
    return inits[0] as k8s.V1Container;
  }

  /** The stored pod has exactly one Castellan sidecar, first among init containers, equal to the expected one. */
  function expectInjected(stored: k8s.V1Pod, expected: k8s.V1Container): void {
    const inits = stored.spec?.initContainers ?? [];
    const all = [...inits, ...(stored.spec?.containers ?? [])];
    expect(all.filter((c) => c.name === 'castellan-sidecar')).toHaveLength(1);
    const s = inits[0] as k8s.V1Container;
    expect(s.name).toBe('castellan-sidecar');
    expect(s.restartPolicy).toBe('Always');
    expect(s.image).toBe(image);
    expect(s.env).toEqual(expected.env);
    expect(s.resources).toEqual(expected.resources);
    expect(s.securityContext).toEqual(expected.securityContext);
    expect(s.command).toEqual(expected.command);
    expect(s.ports).toEqual(expected.ports);
    // The ServiceAccount admission plugin may add its token mount next to ours.
    expect(s.volumeMounts).toEqual(expect.arrayContaining(expected.volumeMounts ?? []));
    // The API server adds defaults (terminationMessagePath, probe successThreshold, ...); nothing of ours differs.
    const { volumeMounts: _mounts, ...rest } = expected;
    expect(s).toMatchObject(rest as Record<string, unknown>);
    expect(stored.spec?.volumes).toContainEqual(expect.objectContaining({ name: 'castellan-tmp', emptyDir: { sizeLimit: '64Mi' } }));
    expect(stored.metadata?.annotations?.[annotations.injected]).toBe(image);
  }

  function expectUntouched(stored: k8s.V1Pod, sent: k8s.V1Pod): void {
    expect((stored.spec?.initContainers ?? []).map((c) => c.name)).toEqual((sent.spec?.initContainers ?? []).map((c) => c.name));
    expect(stored.spec?.containers.map((c) => [c.name, c.env ?? []])).toEqual(sent.spec?.containers.map((c) => [c.name, c.env ?? []]));
    expect(stored.metadata?.annotations?.[annotations.injected]).toBeUndefined();
    expect((stored.spec?.volumes ?? []).map((v) => v.name)).not.toContain('castellan-tmp');
  }

  async function secretCerts(): Promise<{ serving: string; cas: string[] }> {
    const s = await core.readNamespacedSecret({ name: 'castellan-webhook-tls', namespace: system });
    const d = s.data ?? {};
    const text = (k: string) => Buffer.from(d[k] ?? '', 'base64').toString('utf8');
    return { serving: new X509Certificate(text('tls.crt')).fingerprint256, cas: splitPem(text('ca.crt')).map((c) => new X509Certificate(c).fingerprint256) };
  }

  async function publishedBundle(): Promise<string> {
    const adm = kube.kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    const mwc = await adm.readMutatingWebhookConfiguration({ name: 'castellan-webhook' });
    const bundles = (mwc.webhooks ?? []).map((w) => w.clientConfig.caBundle ?? '');
    expect(new Set(bundles).size).toBe(1);
    return Buffer.from(bundles[0] ?? '', 'base64').toString('utf8');
  }

  /** A TLS handshake with `b` that trusts only the published caBundle: the certificate it serves. */
  async function handshakeB(): Promise<string> {
    const ca = await publishedBundle();
    return new Promise((resolve, reject) => {
      const sock = connect({ host: '127.0.0.1', port: portB, ca, rejectUnauthorized: true }, () => {
        const fp = sock.getPeerX509Certificate()?.fingerprint256 ?? '';
        sock.end();
        resolve(fp);
      });
      sock.once('error', reject);
    });
  }

  async function deleteAllPods(namespace = apps): Promise<void> {
    await core.deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 });
    await waitFor('pods to be gone', async () => ((await core.listNamespacedPod({ namespace })).items.length === 0 ? true : undefined), { timeoutMs: 120_000, intervalMs: 500 });
  }

  beforeAll(async () => {
    kube = await startKube(1);
    core = kube.kc.makeApiClient(k8s.CoreV1Api);
    await installCrds(kube);
    for (const name of [system, apps]) await core.createNamespace({ body: { metadata: { name } } });
    // The ServiceAccount admission plugin refuses pods until the namespace's default ServiceAccount exists.
    for (const namespace of [system, apps]) {
      await waitFor(`the default ServiceAccount in ${namespace}`, async () => core.readNamespacedServiceAccount({ name: 'default', namespace }).then(() => true), { timeoutMs: 60_000, intervalMs: 300 });
    }
    const [portA, b] = await freePorts(2);
    portB = b as number;
    // The chart's own webhook configuration, pointed at operator b.
    const rendered = await helm('template', 'castellan', chart, '--kube-version', '1.34.4', '--namespace', system, '--show-only', 'templates/webhook.yaml', '--set', `webhook.url=https://127.0.0.1:${portB}`);
    const file = join(dir, 'webhook.yaml');
    writeFileSync(file, rendered);
    await kube.cluster.kubectl(['apply', '-f', file]);

    const a = await startOperator('a', portA as number);
    await waitFor('operator a to lead', async () => (a.isLeader() ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    const opB = await startOperator('b', portB);
    expect(opB.isLeader()).toBe(false);
    await waitFor('the caBundle to be published', async () => ((await publishedBundle()) !== '' ? true : undefined), { timeoutMs: 30_000, intervalMs: 300 });
  }, 360_000);

  afterAll(async () => {
    await Promise.allSettled([...operators.values()].map((o) => o.stop()));
    await kube?.dispose();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('injects exactly the expected sidecar into annotated and labeled pods', async () => {
    const byAnnotation = pod('annotated', { annotations: { [annotations.inject]: 'true' } }, { initContainers: [{ name: 'migrate', image: 'example.invalid/migrate:1' }] });
    const stored = await create(byAnnotation);
    expectInjected(stored, expectedSidecar(byAnnotation));
    expect(stored.spec?.initContainers?.map((c) => c.name)).toEqual(['castellan-sidecar', 'migrate']);
    expect(stored.spec?.containers[0]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://127.0.0.1:3600' }]);
    // What the sidecar needs from the pod: its name and namespace (downward API), NATS, its role.
    const env = stored.spec?.initContainers?.[0]?.env ?? [];
    expect(env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.namespace');
    expect(env.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(env.find((e) => e.name === 'CASTELLAN_NATS_URL')?.value).toBe('nats://127.0.0.1:1');
    expect(env.find((e) => e.name === 'CASTELLAN_ROLE')?.value).toBe('client');

    const byLabel = pod('labeled', { labels: { [annotations.inject]: 'true' } });
    expectInjected(await create(byLabel), expectedSidecar(byLabel));

    const tuned = pod('tuned', { annotations: { [annotations.inject]: 'true', [annotations.port]: '3700', [annotations.logLevel]: 'debug', [annotations.cpuLimit]: '500m', [annotations.memoryRequest]: '32Mi' } });
    const t = await create(tuned);
    expectInjected(t, expectedSidecar(tuned));
    expect(t.spec?.initContainers?.[0]?.resources).toEqual({ requests: { cpu: '25m', memory: '32Mi' }, limits: { cpu: '500m', memory: '256Mi' } });
    expect(t.spec?.initContainers?.[0]?.env?.find((e) => e.name === 'CASTELLAN_HTTP_PORT')?.value).toBe('3700');
  }, 60_000);

  it("injects the sidecar into a Deployment's pods, and into a burst of 200 pods created at once", async () => {
    const apps1 = kube.kc.makeApiClient(k8s.AppsV1Api);
    const template = pod('unused', { annotations: { [annotations.inject]: 'true' }, labels: { app: 'web' } });
    await apps1.createNamespacedDeployment({
      namespace: apps,
      body: { metadata: { name: 'web' }, spec: { replicas: 20, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' }, annotations: template.metadata?.annotations }, spec: template.spec } } },
    });
    const pods = await waitFor(
      "the Deployment's 20 pods",
      async () => {
        const list = await core.listNamespacedPod({ namespace: apps, labelSelector: 'app=web' });
        return list.items.length === 20 ? list.items : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const expected = expectedSidecar(template);
    for (const p of pods) expectInjected(p, expected);

    const names = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    const failures: string[] = [];
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map((n) =>
          core.createNamespacedPod({ namespace: apps, body: pod(n, { annotations: { [annotations.inject]: 'true' }, labels: { burst: 'yes' } }) }).catch((err: unknown) => failures.push(`${n}: ${String(err)}`)),
        ),
      );
    }
    expect(failures).toEqual([]);
    const burst = await core.listNamespacedPod({ namespace: apps, labelSelector: 'burst=yes' });
    expect(burst.items).toHaveLength(200);
    const want = expectedSidecar(pod('x', { annotations: { [annotations.inject]: 'true' } }));
    for (const p of burst.items) expectInjected(p, want);
    await apps1.deleteNamespacedDeployment({ name: 'web', namespace: apps });
    await deleteAllPods();
  }, 300_000);

  it('leaves unannotated, opted-out, already-injected and hand-written-sidecar pods, and the operator namespace, untouched', async () => {
    const plain = pod('plain');
    expectUntouched(await create(plain), plain);
    const optedOut = pod('opted-out', { annotations: { [annotations.inject]: 'false', [annotations.port]: 'whatever' } });
    expectUntouched(await create(optedOut), optedOut);
    const labelOut = pod('label-out', { labels: { [annotations.inject]: 'false' } });
    expectUntouched(await create(labelOut), labelOut);

    const handWritten = pod('hand-written', { annotations: { [annotations.inject]: 'true' } }, {
      initContainers: [{ name: 'castellan-sidecar', image: 'mine/castellan:0', restartPolicy: 'Always', command: ['castellan', 'sidecar'] }],
    });
    const h = await create(handWritten);
    expect(h.spec?.initContainers?.map((c) => [c.name, c.image])).toEqual([['castellan-sidecar', 'mine/castellan:0']]);
    expect(h.metadata?.annotations?.[annotations.injected]).toBeUndefined();

    // A pod made from an injected pod's spec (what a controller copying a stored pod would send).
    const first = await create(pod('first', { annotations: { [annotations.inject]: 'true' } }));
    const copy: k8s.V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'copy', annotations: first.metadata?.annotations }, spec: { ...first.spec!, nodeName: undefined } };
    const c = await create(copy);
    expect([...(c.spec?.initContainers ?? []), ...(c.spec?.containers ?? [])].filter((x) => x.name === 'castellan-sidecar')).toHaveLength(1);
    expect(c.spec?.containers[0]?.env).toEqual([{ name: 'CASTELLAN_SIDECAR_URL', value: 'http://127.0.0.1:3600' }]);

    // The operator's own namespace is outside the webhook's namespaceSelector.
    const own = pod('own', { annotations: { [annotations.inject]: 'true' } });
    expectUntouched(await create(own, system), own);
  }, 60_000);

  it('refuses invalid annotations with a message naming the annotation', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ [annotations.inject]: 'yes' }, 'castellan.dev/inject'],
      [{ [annotations.inject]: 'true', [annotations.port]: '99999' }, 'castellan.dev/sidecar-port'],
      [{ [annotations.inject]: 'true', [annotations.port]: '8080' }, 'castellan.dev/sidecar-port: port 8080 is already used by container app'],
      [{ [annotations.inject]: 'true', [annotations.logLevel]: 'loud' }, 'castellan.dev/sidecar-log-level'],
      [{ [annotations.inject]: 'true', [annotations.cpuRequest]: 'a lot' }, 'castellan.dev/sidecar-cpu-request'],
      [{ [annotations.inject]: 'true', [annotations.natsUrl]: 'nats://elsewhere:4222' }, 'castellan.dev/nats-url: NATS overrides are not allowed'],
    ];
    for (const [i, [a, message]] of cases.entries()) {
      const text = await refusal(pod(`bad-${i}`, { annotations: a }));
      expect(text).toContain('400');
      expect(text).toContain('admission webhook "inject.castellan.dev" denied the request');
      expect(text).toContain(message);
    }
    const byLabel = await refusal(pod('bad-label', { labels: { [annotations.inject]: 'yes' } }));
    expect(byLabel).toContain('admission webhook "strict.inject.castellan.dev" denied the request');
    expect(byLabel).toContain('label castellan.dev/inject');
    expect((await core.listNamespacedPod({ namespace: apps, labelSelector: `${annotations.inject}` })).items.map((p) => p.metadata?.name)).not.toContain('bad-label');
  }, 60_000);

  it('rotates serving certificates and the CA while pods are created, without one failed admission; only the leader rotates', async () => {
    const a = operators.get('a') as Operator;
    const b = operators.get('b') as Operator;
    const start = await secretCerts();
    const servedByB = new Set<string>();
    const servingSeen = new Set<string>([start.serving]);
    const newestCas = new Set<string>([start.cas[0] ?? '']);
    const failures: string[] = [];
    let created = 0;
    const deadline = Date.now() + 240_000;
    // Until the CA changed once and the serving certificate at least three times (b reloading each).
    while (newestCas.size < 2 || servingSeen.size < 4 || servedByB.size < 3) {
      if (Date.now() > deadline) throw new Error(`no rotation seen: ${newestCas.size} CAs, ${servingSeen.size} serving certificates, b served ${servedByB.size}`);
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          const name = `rot-${created++}`;
          // Labeled: the fail-closed webhook, so any TLS failure would refuse the pod.
          await core.createNamespacedPod({ namespace: apps, body: pod(name, { labels: { [annotations.inject]: 'true', rot: 'yes' } }) }).catch((err: unknown) => {
            failures.push(`${name}: ${String((err as { body?: unknown }).body ?? err)}`);
          });
        }),
      );
      const now = await secretCerts();
      servingSeen.add(now.serving);
      if (now.cas[0] !== undefined) newestCas.add(now.cas[0]);
      // Whatever b serves right now is trusted by the caBundle the API server has.
      servedByB.add(await handshakeB());
    }
    const rot = await core.listNamespacedPod({ namespace: apps, labelSelector: 'rot=yes' });
    await deleteAllPods();
    expect(failures).toEqual([]);
    expect(rot.items).toHaveLength(created);
    for (const p of rot.items) expect(p.spec?.initContainers?.[0]?.name).toBe('castellan-sidecar');
    expect(created).toBeGreaterThan(20);

    const rotations = async (op: Operator) => ((await op.metrics.registry.getSingleMetric('castellan_operator_webhook_certificate_rotations_total')?.get())?.values ?? []).reduce((n, v) => n + v.value, 0);
    expect(await rotations(a)).toBeGreaterThanOrEqual(4);
    expect(await rotations(b)).toBe(0);
    const admissions = await b.metrics.registry.getSingleMetric('castellan_operator_webhook_admissions_total')?.get();
    expect(admissions?.values.find((v) => v.labels.decision === 'patch')?.value).toBeGreaterThanOrEqual(created);
  }, 300_000);

  it('with the webhook down: unrelated and annotated pods are created unchanged, labeled pods are refused', async () => {
    const b = operators.get('b') as Operator;
    await b.stop();
    operators.delete('b');
    const plain = pod('down-plain');
    expectUntouched(await create(plain), plain);
    const annotated = pod('down-annotated', { annotations: { [annotations.inject]: 'true' } });
    expectUntouched(await create(annotated), annotated);
    const text = await refusal(pod('down-labeled', { labels: { [annotations.inject]: 'true' } }));
    expect(text).toContain('failed calling webhook "strict.inject.castellan.dev"');

    // Back up: labeled pods get their sidecar again.
    await startOperator('b', portB);
    let attempt = 0;
    const labeled = (n: number) => pod(`up-labeled-${n}`, { labels: { [annotations.inject]: 'true' } });
    const stored = await waitFor('a labeled pod to be admitted again', async () => create(labeled(attempt++)).catch(() => undefined), { timeoutMs: 60_000, intervalMs: 500 });
    expectInjected(stored, expectedSidecar(labeled(0)));
    await deleteAllPods();
  }, 240_000);

  it('helm install creates the webhook with its Service, Secret and RBAC; helm uninstall leaves no webhook behind', async () => {
    await helm('install', 'wh', chart, '--namespace', system, '--set', 'nats.url=nats://127.0.0.1:1', '--set', 'replicaCount=1', '--set', 'leaderElection.leaseName=wh');
    const adm = kube.kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    const mwc = await adm.readMutatingWebhookConfiguration({ name: 'wh-castellan-webhook' });
    expect(mwc.webhooks?.map((w) => [w.name, w.failurePolicy, w.clientConfig.service?.name])).toEqual([
      ['strict.inject.castellan.dev', 'Fail', 'wh-castellan-webhook'],
      ['inject.castellan.dev', 'Ignore', 'wh-castellan-webhook'],
    ]);
    await core.readNamespacedService({ name: 'wh-castellan-webhook', namespace: system });
    await core.readNamespacedSecret({ name: 'wh-castellan-webhook-tls', namespace: system });
    const sa = `system:serviceaccount:${system}:wh-castellan`;
    const can = (...args: string[]) => kube.cluster.kubectl(['auth', 'can-i', ...args, '--as', sa]).then(() => true, () => false);
    expect(await can('update', 'mutatingwebhookconfigurations.admissionregistration.k8s.io/wh-castellan-webhook')).toBe(true);
    expect(await can('update', 'mutatingwebhookconfigurations.admissionregistration.k8s.io/castellan-webhook')).toBe(false);
    expect(await can('update', 'secrets/wh-castellan-webhook-tls', '-n', system)).toBe(true);
    expect(await can('get', 'secrets/castellan-webhook-tls', '-n', system)).toBe(false);
    expect(await can('list', 'secrets', '-n', system)).toBe(false);

    await helm('uninstall', 'wh', '--namespace', system, '--wait', '--timeout', '120s');
    const left = (await adm.listMutatingWebhookConfiguration()).items.map((m) => m.metadata?.name);
    expect(left).toEqual(['castellan-webhook']); // only this test's own, applied with kubectl
    await expect(core.readNamespacedSecret({ name: 'wh-castellan-webhook-tls', namespace: system })).rejects.toMatchObject({ code: 404 });
    // Labeled pods are admitted (by this test's webhook only).
    expectInjected(await create(pod('after-uninstall', { labels: { [annotations.inject]: 'true' } })), expectedSidecar(pod('after-uninstall', { labels: { [annotations.inject]: 'true' } })));
  }, 240_000);
});
