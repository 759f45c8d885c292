/**
 * NATS operator mode (issue 16, docs/security.md "Operator mode"), with real
 * parts only: a kube-apiserver issuing projected ServiceAccount tokens,
 * answering TokenReviews and holding the resources; a 3-node nats-server
 * cluster in operator mode whose configuration names no namespace at all
 * (operator, system account, callout account, default sentinel, full
 * resolver); the Castellan operator serving the auth callout with its account
 * registry and grants watch; sidecars as real processes.
 *
 * What must hold: a namespace's first pod creates its NATS account (no server
 * reload, no configuration per namespace); namespaces are isolated by NATS
 * (streams, subjects, forged namespaces); a resource's `spec.access.callers`
 * opens its call subjects to the namespaces it names, live, and closing it
 * closes them; account keys survive an operator restart (the same storage);
 * twenty namespaces connecting at once each get their own account; the
 * servers encrypt callout requests (xkey), which carry the tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, credsAuthenticator, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { waitFor } from '../../common/net.ts';
import { natsSecurityOptions } from '../../common/nats-security.ts';
import { NatsCluster } from '../../local/nats-cluster.ts';
import { natsOperatorMode, type NatsOperatorMode } from '../../local/nats-operator-mode.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { installCrds, serviceAccountToken, startKube, type TestKube } from '../harness/kube.ts';
import { startApp, startSidecar, stopProc, waitHttp, type SidecarProc } from '../harness/sidecars.ts';

const dir = mkdtempSync(join(tmpdir(), 'castellan-security-opmode-'));
const group = 'castellan.dev';
const version = 'v1alpha1';
let kube: TestKube;
let nats: NatsCluster;
let mode: NatsOperatorMode;
let operator: Operator | undefined;
const tokens: Record<string, string> = {};
const procs: SidecarProc[] = [];
const raw: NatsConnection[] = [];
const clients: Record<string, SidecarProc> = {};
const keyFiles = { issuer: '', signing: '', system: '', callout: '', xkey: '' };

const saToken = (namespace: string, name: string, audiences?: string[]): Promise<string> => serviceAccountToken(kube, dir, namespace, name, audiences);

async function rawClient(tokenFile: string, namespace: string): Promise<NatsConnection> {
  const nc = await connect({ ...natsSecurityOptions({ auth: { serviceAccountToken: tokenFile }, tls: {} }, { namespace }), servers: nats.urls, timeout: 20_000 });
  raw.push(nc);
  return nc;
}

interface Answer {
  status: number;
  body: { value?: number; error?: { code: string; message: string } };
}

async function http(base: string, path: string, namespace?: string): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: namespace === undefined ? {} : { 'castellan-namespace': namespace }, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Answer['body']) };
}

const env = (namespace: string, sa: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ CASTELLAN_NATS_SA_TOKEN: tokens[`${namespace}/${sa}`], POD_NAMESPACE: namespace, ...extra });

async function host(name: string, extra: NodeJS.ProcessEnv): Promise<SidecarProc> {
  const app = await startApp(`${name}-app`);
  const sc = await startSidecar(name, nats.urls, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: 'counter', CASTELLAN_APP_PORT: String(app.port), ...extra }, { wait: false });
  sc.app = app;
  return sc;
}

async function startOperator(identity: string): Promise<Operator> {
  const config = loadOperatorConfig(
    {
      identity,
      nats: { urls: nats.urls, auth: { serviceAccountToken: tokens['castellan-system/castellan'] } },
      http: { port: 0 },
      leaderElection: { enabled: false },
      sidecar: { image: 'example.invalid/castellan:test' },
      resyncPeriod: '20s',
      authCallout: {
        enabled: true,
        issuerSeed: keyFiles.issuer,
        admins: ['system:serviceaccount:castellan-system:castellan'],
        operatorSigningSeed: keyFiles.signing,
        systemCreds: keyFiles.system,
        xkeySeed: keyFiles.xkey,
        nats: { auth: { creds: keyFiles.callout } },
      },
    },
    {},
  );
  const op = new Operator({ config, kc: kube.kc, log: logger(`test.${identity}`) });
  await op.start();
  return op;
}

const custom = () => kube.kc.makeApiClient(k8s.CustomObjectsApi);
const allowWeb = [{ namespace: 'team-a', serviceAccounts: ['web'] }];
const counterResource = (callers: unknown[]) => ({
  apiVersion: `${group}/${version}`,
  kind: 'DurableObject',
  metadata: { name: 'counter' },
  spec: { appPort: 8080, template: { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] } }, ...(callers.length === 0 ? {} : { access: { callers } }) },
});

beforeAll(async () => {
  kube = await startKube(1);
  const crds = installCrds(kube);
  mode = await natsOperatorMode();
  keyFiles.issuer = join(dir, 'issuer.nk');
  keyFiles.signing = join(dir, 'operator-signing.nk');
  keyFiles.system = join(dir, 'system.creds');
  keyFiles.callout = join(dir, 'callout.creds');
  keyFiles.xkey = join(dir, 'xkey.seed');
  writeFileSync(keyFiles.issuer, mode.issuerSeed, { mode: 0o600 });
  writeFileSync(keyFiles.signing, mode.operatorSigningSeed, { mode: 0o600 });
  writeFileSync(keyFiles.system, mode.systemCreds, { mode: 0o600 });
  writeFileSync(keyFiles.callout, mode.calloutCreds, { mode: 0o600 });
  writeFileSync(keyFiles.xkey, mode.xkeySeed, { mode: 0o600 });
  // The servers start before any tenant namespace exists.
  nats = await NatsCluster.start({ servers: 3, dir: join(dir, 'nats'), security: { config: mode.config } });

  const core = kube.kc.makeApiClient(k8s.CoreV1Api);
  for (const ns of ['team-a', 'team-b', 'castellan-system']) await core.createNamespace({ body: { metadata: { name: ns } } });
  for (const id of ['team-a/web', 'team-a/batch', 'team-b/app', 'castellan-system/castellan']) {
    const [namespace, name] = id.split('/') as [string, string];
    await waitFor(`ServiceAccount ${id}`, async () => (await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }), true), { timeoutMs: 30_000, intervalMs: 500 });
    tokens[id] = await saToken(namespace, name);
  }
  await crds;
  operator = await startOperator('opmode-1');

  const callers = JSON.stringify(allowWeb);
  const started: SidecarProc[] = [];
  started.push(await host('b-counter-0', env('team-b', 'app', { CASTELLAN_ACCESS_CALLERS: callers })));
  started.push(await host('a-counter-0', env('team-a', 'web')));
  started.push(await startSidecar('a-web', nats.urls, { CASTELLAN_ROLE: 'client', ...env('team-a', 'web') }, { wait: false }));
  started.push(await startSidecar('a-batch', nats.urls, { CASTELLAN_ROLE: 'client', ...env('team-a', 'batch') }, { wait: false }));
  started.push(await startSidecar('b-client', nats.urls, { CASTELLAN_ROLE: 'client', ...env('team-b', 'app') }, { wait: false }));
  procs.push(...started);
  [, , clients.aWeb, clients.aBatch, clients.b] = started as [SidecarProc, SidecarProc, SidecarProc, SidecarProc, SidecarProc];
  for (const p of started) await waitHttp(`${p.url}/readyz`, 180_000);
}, 600_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.allSettled(raw.map((nc) => nc.close()));
  await Promise.allSettled(procs.map((p) => stopProc(p, 'SIGKILL')));
  await nats?.shutdown();
  await kube?.dispose();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('namespace accounts created on demand', () => {
  it('pods of namespaces the servers were never configured for connect and work, each namespace in its own account', async () => {
    for (const node of nats.nodes) expect(readFileSync(node.configFile, 'utf8')).not.toMatch(/team-/);
    const b1 = await http(clients.b!.url, '/v1/objects/counter/alice/increment');
    expect([b1.status, b1.body.value]).toEqual([200, 1]);
    expect((await http(clients.b!.url, '/v1/objects/counter/alice/increment')).body.value).toBe(2);
    // Same class and id in team-a: another object, another account's storage.
    const a1 = await http(clients.aWeb!.url, '/v1/objects/counter/alice/increment');
    expect([a1.status, a1.body.value]).toEqual([200, 1]);
  }, 120_000);

  it("team-a's credentials reach nothing of team-b: streams, subjects, a forged namespace", async () => {
    const a = await rawClient(tokens['team-a/web']!, 'team-a');
    const jsm = await jetstreamManager(a, { timeout: 10_000 });
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => n.includes('team-b'))).toEqual([]);
    await expect(jsm.streams.info('CASTELLAN_OBJ_team-b_counter')).rejects.toThrow(/stream not found/);
    await expect(jsm.streams.purge('CASTELLAN_OBJ_team-b_counter')).rejects.toThrow(/stream not found/);
    await expect(a.request('castellan.rpc.team-b.counter._.team-b.app', 'x', { timeout: 5_000 })).rejects.toThrow(/Permissions Violation for Publish/);
    // A forged namespace and a missing token are refused at connect.
    await expect(rawClient(tokens['team-a/web']!, 'team-b')).rejects.toThrow(/Authorization Violation/);
    await expect(connect({ servers: nats.urls, timeout: 20_000 }).then((nc) => raw.push(nc))).rejects.toThrow(/Authorization Violation/);
    // B is intact and keeps counting.
    expect((await http(clients.b!.url, '/v1/objects/counter/alice/increment')).body.value).toBe(3);
  }, 120_000);
});

describe('the callout requests are encrypted (xkey)', () => {
  it('what a server sends the callout names its curve key and shows neither the token nor a readable JWT; the connection is granted', async () => {
    const spy = await connect({ servers: nats.urls, authenticator: credsAuthenticator(readFileSync(keyFiles.callout)), timeout: 20_000 });
    raw.push(spy);
    const seen: Msg[] = [];
    spy.subscribe('$SYS.REQ.USER.AUTH', {
      callback: (_e, m) => {
        seen.push(m);
      },
    });
    await spy.flush();
    const token = readFileSync(tokens['team-a/web']!, 'utf8');
    await rawClient(tokens['team-a/web']!, 'team-a');
    const m = await waitFor('the spy to see a callout request', async () => seen[0], { timeoutMs: 20_000, intervalMs: 100 });
    expect(m.headers?.get('Nats-Server-Xkey')).toMatch(/^X[A-Z2-7]{55}$/);
    const body = Buffer.from(m.data).toString('latin1');
    expect(body.startsWith('eyJ')).toBe(false);
    expect(body.includes(token)).toBe(false);
  }, 60_000);
});

describe('many namespaces at once', () => {
  it('20 new namespaces connecting together each get their own account, JetStream and nothing of the others', async () => {
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    const names = Array.from({ length: 20 }, (_, i) => `tenant-${i}`);
    const files = await Promise.all(
      names.map(async (ns) => {
        await core.createNamespace({ body: { metadata: { name: ns } } });
        await waitFor(`ServiceAccount ${ns}/app`, async () => (await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app' } } }), true), { timeoutMs: 30_000, intervalMs: 500 });
        return saToken(ns, 'app');
      }),
    );
    const conns = await Promise.all(names.map((ns, i) => rawClient(files[i]!, ns)));
    await Promise.all(
      conns.map(async (nc, i) => {
        const jsm = await jetstreamManager(nc, { timeout: 20_000 });
        await jsm.streams.add({ name: `CASTELLAN_T_${names[i]}`, subjects: [`castellan.obj.${names[i]}.t.>`] });
      }),
    );
    for (const [i, nc] of conns.entries()) {
      const seen: string[] = [];
      for await (const n of (await jetstreamManager(nc, { timeout: 20_000 })).streams.names()) seen.push(n);
      expect(seen).toEqual([`CASTELLAN_T_${names[i]}`]);
    }
  }, 180_000);
});

describe('cross-namespace calls follow spec.access.callers', () => {
  it('unreachable at the NATS level until a resource of team-b names team-a; reachable then; closed again when it stops naming it', async () => {
    const closed = await http(clients.aWeb!.url, '/v1/objects/counter/shared/increment', 'team-b');
    expect(closed.status).toBe(503);

    await custom().createNamespacedCustomObject({ group, version, namespace: 'team-b', plural: 'durableobjects', body: counterResource(allowWeb) });
    const opened = await waitFor(
      "team-a's call to reach team-b's counter",
      async () => {
        const r = await http(clients.aWeb!.url, '/v1/objects/counter/shared/increment', 'team-b');
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(opened.body.value).toBe(1);
    // The host still enforces the ServiceAccounts: team-a/batch is routed, and refused.
    const batch = await http(clients.aBatch!.url, '/v1/objects/counter/shared/increment', 'team-b');
    expect([batch.status, batch.body.error?.code]).toEqual([403, 'FORBIDDEN']);

    // A merge patch: the operator updates the resource too (finalizer, status), so no read-modify-write.
    await custom().patchNamespacedCustomObject(
      { group, version, namespace: 'team-b', plural: 'durableobjects', name: 'counter', body: { spec: { access: null } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    let servedMeanwhile = 0;
    await waitFor(
      "team-a's route to team-b to close",
      async () => {
        const r = await http(clients.aWeb!.url, '/v1/objects/counter/shared/increment', 'team-b');
        if (r.status === 200) servedMeanwhile++;
        return r.status === 503 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // It stays closed.
    expect((await http(clients.aWeb!.url, '/v1/objects/counter/shared/increment', 'team-b')).status).toBe(503);
    // team-b's own calls never stopped: the object counted team-a's served calls and nothing else.
    expect((await http(clients.b!.url, '/v1/objects/counter/shared/increment')).body.value).toBe(2 + servedMeanwhile);
  }, 180_000);
});

describe('operator restart', () => {
  it('a new operator derives the same account keys: a new pod of team-b finds its storage', async () => {
    await operator?.stop();
    operator = await startOperator('opmode-2');
    const fresh = await startSidecar('b-client-2', nats.urls, { CASTELLAN_ROLE: 'client', ...env('team-b', 'app') });
    procs.push(fresh);
    expect((await http(fresh.url, '/v1/objects/counter/alice/increment')).body.value).toBe(4);
  }, 180_000);
});
