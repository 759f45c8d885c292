/**
 * Namespace isolation enforced by NATS (issue 16, item 2), with real parts
 * only: a kube-apiserver issuing projected ServiceAccount tokens (audience
 * `castellan`) and answering TokenReviews, a nats-server configured for the
 * auth callout with one account per namespace, the Castellan auth callout
 * service, and sidecars as real processes in namespaces team-a and team-b.
 *
 * A's own objects and queues work; a raw NATS client holding A's token tries
 * B's RPC subjects, B's stream subjects, B's replies and B's streams through
 * the JetStream API, and forges its namespace: NATS refuses every attempt and
 * B's data is untouched. Tokens that are missing, garbage, for another
 * audience or revoked are refused; a revoked token's live connection is cut
 * when its grant expires. docs/security.md has the table of these cases.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createAccount } from '@nats-io/nkeys';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { natsSecurityOptions } from '../../common/nats-security.ts';
import { projectRoot } from '../../common/paths.ts';
import { NatsCluster } from '../../local/nats-cluster.ts';
import { startAuthCallout, type AuthCallout } from '../../operator/authcallout/service.ts';
import { encodeReceipt, receiptKey, type Receipt } from '../../sidecar/queues/receipt.ts';
import { kubeTokenReviewer } from '../../operator/authcallout/token-review.ts';
import { loadOperatorConfig } from '../../operator/config.ts';
import { Operator } from '../../operator/operator.ts';
import { installCrds, serviceAccountToken, startKube, type TestKube } from '../harness/kube.ts';
import { call, killQueueProcs, startQueueHost } from '../harness/queues.ts';
import { startClient, startHost, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const dir = mkdtempSync(join(tmpdir(), 'castellan-security-isolation-'));
const log = logger('test.isolation');
const enc = new TextEncoder();
let kube: TestKube;
let nats: NatsCluster;
let callout: AuthCallout;
let calloutNc: NatsConnection;
let issuerSeed: string;
const calloutPassword = randomBytes(12).toString('hex');
const files = { a: '', temp: '', b: '', operator: '', wrongAudience: '', garbage: '' };
const procs: SidecarProc[] = [];
const raw: NatsConnection[] = [];
const spawned: ChildProcess[] = [];
let clientA: SidecarProc;
let clientB: SidecarProc;
let operator: Operator | undefined;
const group = 'castellan.dev';
const version = 'v1alpha1';
type CR = { metadata: { name: string; generation?: number }; status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } };

const saToken = (namespace: string, name: string, audiences?: string[]): Promise<string> => serviceAccountToken(kube, dir, namespace, name, audiences);

/** A raw NATS client presenting a token file, asking for `namespace`. */
async function rawClient(tokenFile: string, namespace: string, extra: { reconnect?: boolean } = {}): Promise<NatsConnection> {
  const nc = await connect({
    ...natsSecurityOptions({ auth: { serviceAccountToken: tokenFile }, tls: {} }, { namespace }),
    servers: nats.urls,
    name: `attacker-${namespace}`,
    timeout: 10_000,
    ...(extra.reconnect === false ? { reconnect: false } : { maxReconnectAttempts: -1, reconnectTimeWait: 200 }),
  });
  raw.push(nc);
  return nc;
}

/** Collects the async errors (permission violations) a connection reports. */
function errorsOf(nc: NatsConnection): string[] {
  const out: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') out.push(String((s.error as Error).message));
  })();
  return out;
}

function startCallout(maxTtlMs: number): AuthCallout {
  return startAuthCallout({
    nc: calloutNc,
    issuerSeed,
    review: kubeTokenReviewer(kube.kc, 'castellan'),
    policy: { audience: 'castellan', admins: ['system:serviceaccount:castellan-system:castellan'], accountPrefix: '', maxTtlMs },
    log,
  });
}

beforeAll(async () => {
  kube = await startKube(1);
  await installCrds(kube);
  const core = kube.kc.makeApiClient(k8s.CoreV1Api);
  for (const ns of ['team-a', 'team-b', 'castellan-system']) await core.createNamespace({ body: { metadata: { name: ns } } });
  const sas: [string, string][] = [['team-a', 'app'], ['team-a', 'temp'], ['team-b', 'app'], ['castellan-system', 'castellan']];
  for (const [namespace, name] of sas) {
    await waitFor(`namespace ${namespace} to accept ServiceAccounts`, async () => (await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }), true), { timeoutMs: 30_000, intervalMs: 500 });
  }
  files.a = await saToken('team-a', 'app');
  files.temp = await saToken('team-a', 'temp');
  files.b = await saToken('team-b', 'app');
  files.operator = await saToken('castellan-system', 'castellan');
  files.wrongAudience = await saToken('team-a', 'app', ['vault']);
  files.garbage = join(dir, 'garbage.token');
  writeFileSync(files.garbage, 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln');

  const issuer = createAccount();
  issuerSeed = new TextDecoder().decode(issuer.getSeed());
  nats = await NatsCluster.start({
    servers: 1,
    dir: join(dir, 'nats'),
    security: {
      config: [
        'accounts {',
        `  AUTH: { users: [ { user: "callout", password: "${calloutPassword}" } ] }`,
        '  "team-a": { jetstream: enabled }',
        '  "team-b": { jetstream: enabled }',
        '}',
        'authorization {',
        // The server waits this long (seconds, default 2) for the callout: a loaded machine needs more.
        '  timeout: 10',
        '  auth_callout {',
        `    issuer: "${issuer.getPublicKey()}"`,
        '    auth_users: [ "callout" ]',
        '    account: AUTH',
        '  }',
        '}',
      ].join('\n'),
    },
  });
  calloutNc = await connect({ servers: nats.urls, user: 'callout', pass: calloutPassword, maxReconnectAttempts: -1 });
  callout = startCallout(0);

  const envA = { CASTELLAN_NATS_SA_TOKEN: files.a, POD_NAMESPACE: 'team-a' };
  const envB = { CASTELLAN_NATS_SA_TOKEN: files.b, POD_NAMESPACE: 'team-b' };
  procs.push(await startHost('a-counter-0', 'counter', nats.urls, envA));
  procs.push(await startHost('b-counter-0', 'counter', nats.urls, envB));
  clientA = await startClient('a-client', nats.urls, envA);
  clientB = await startClient('b-client', nats.urls, envB);
  procs.push(clientA, clientB);
  await startQueueHost('jobs', 0, nats.urls, { hosts: 1, replicaCount: 1 }, envA);
}, 600_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.allSettled(raw.map((nc) => nc.close()));
  for (const c of spawned) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.allSettled(procs.map((p) => stopProc(p, 'SIGKILL')));
  await killQueueProcs();
  await callout?.stop().catch(() => undefined);
  await calloutNc?.close().catch(() => undefined);
  await nats?.shutdown();
  await kube?.dispose();
  rmSync(dir, { recursive: true, force: true });
}, 180_000);

describe('a namespace uses its own objects and queues through the callout', () => {
  it('A and B each call counter/alice and get their own state', async () => {
    const inc = (base: string) => call<{ value: number }>(base, 'POST', '/v1/objects/counter/alice/increment');
    expect((await inc(clientA.url)).body).toMatchObject({ value: 1 });
    expect((await inc(clientA.url)).body).toMatchObject({ value: 2 });
    expect((await inc(clientB.url)).body).toMatchObject({ value: 1 });
  }, 120_000);

  it("A's queue sends, receives and deletes", async () => {
    const sent = await call<{ messageId: string }>(clientA.url, 'POST', '/v1/queues/jobs/messages', { body: 'job-1' });
    expect(sent.status).toBe(201);
    const got = await call<{ messages: { receiptHandle: string; body: string }[] }>(clientA.url, 'POST', '/v1/queues/jobs/receive', { maxMessages: 1, waitSeconds: 10 });
    expect(got.body.messages.map((m) => m.body)).toEqual(['job-1']);
    const handle = got.body.messages[0]!.receiptHandle;
    // A handle signed with anything but the queue's secret key (here: the old public derivation) is refused.
    const forged = encodeReceipt(JSON.parse(Buffer.from(handle.split('.')[0]!, 'base64url').toString('utf8')) as Receipt, receiptKey('team-a', 'jobs'));
    const refused = await call<{ error: { code: string } }>(clientA.url, 'DELETE', `/v1/queues/jobs/messages/${encodeURIComponent(forged)}`);
    expect([refused.status, refused.body.error.code]).toEqual([400, 'INVALID_RECEIPT_HANDLE']);
    const del = await call(clientA.url, 'DELETE', `/v1/queues/jobs/messages/${encodeURIComponent(handle)}`);
    expect(del.status).toBe(204);
  }, 120_000);
});

describe('metrics', () => {
  it('expose no token, password or key', async () => {
    const token = readFileSync(files.a, 'utf8');
    for (const url of [clientA.url, procs[0]!.url]) {
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toContain('# HELP');
      expect(text).not.toContain(token.slice(0, 40));
      expect(text).not.toContain(calloutPassword);
    }
  });
});

describe("A's credentials against B", () => {
  it("publishing to B's object RPC, stream and queue subjects is refused by NATS", async () => {
    const nc = await rawClient(files.a, 'team-a');
    const errors = errorsOf(nc);
    for (const subject of ['castellan.rpc.team-b.counter.b-counter-0', 'castellan.obj.team-b.counter.own.YWxpY2U', 'castellan.q.team-b.jobs.meta.config', 'castellan.qrpc.team-b.jobs.jobs-0']) {
      await expect(nc.request(subject, enc.encode('{}'), { timeout: 3_000 })).rejects.toThrow();
      await waitFor(`a publish violation for ${subject}`, async () => (errors.some((e) => e.includes(`Publish to "${subject}"`)) ? true : undefined), { timeoutMs: 10_000, intervalMs: 100 });
    }
  }, 120_000);

  it("subscribing to B's subjects is refused; A's inbox sees none of B's replies", async () => {
    const nc = await rawClient(files.a, 'team-a');
    const errors = errorsOf(nc);
    for (const subject of ['castellan.obj.team-b.>', 'castellan.rpc.team-b.>', 'castellan.*.team-b.>', '>', '$JS.API.>']) {
      nc.subscribe(subject);
      await waitFor(`a subscription violation for ${subject}`, async () => (errors.some((e) => e.includes(`Subscription to "${subject}"`)) ? true : undefined), { timeoutMs: 10_000, intervalMs: 100 });
    }
    // A's own account traffic (its hosts' consumers) may show up here; nothing of B's may.
    const seen: string[] = [];
    const inbox = nc.subscribe('_INBOX.>', {
      callback: (_err, m) => {
        seen.push(`${m.subject} ${m.string()}`);
      },
    });
    await nc.flush();
    // B's client calls its object: request and reply travel in B's account only.
    const r = await call<{ value: number }>(clientB.url, 'POST', '/v1/objects/counter/bob-in-b/increment');
    expect(r.body).toMatchObject({ value: 1 });
    await nc.flush();
    expect(seen.filter((s) => s.includes('bob-in-b') || s.includes('team-b'))).toEqual([]);
    inbox.unsubscribe();
  }, 120_000);

  it("B's streams cannot be read, listed, purged or deleted through the JetStream API", async () => {
    const nc = await rawClient(files.a, 'team-a');
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    const bStream = 'CASTELLAN_OBJ_team-b_counter';
    await expect(jsm.streams.info(bStream)).rejects.toThrow(/stream not found/);
    await expect(jsm.streams.getMessage(bStream, { last_by_subj: 'castellan.obj.team-b.counter.own.YWxpY2U' })).rejects.toThrow();
    await expect(jsm.streams.purge(bStream)).rejects.toThrow(/stream not found/);
    await expect(jsm.streams.delete(bStream)).rejects.toThrow(/stream not found/);
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    expect(names.some((n) => n.includes('team-b'))).toBe(false);
    expect(names).toContain('CASTELLAN_OBJ_team-a_counter');

    // B's stream and state are untouched: the operator (admin) sees the stream in B's account, B still counts on.
    const op = await rawClient(files.operator, 'team-b');
    const opJsm = await jetstreamManager(op, { timeout: 10_000 });
    expect((await opJsm.streams.info(bStream)).config.name).toBe(bStream);
    expect((await call<{ value: number }>(clientB.url, 'POST', '/v1/objects/counter/alice/increment')).body).toMatchObject({ value: 2 });
  }, 120_000);

  it('a forged namespace is refused at connect, for a raw client and for a sidecar', async () => {
    await expect(rawClient(files.a, 'team-b', { reconnect: false })).rejects.toThrow(/Authorization/i);
    const port = await freePort();
    let out = '';
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(projectRoot, 'cli', 'main.ts'), 'sidecar'], {
      env: { ...process.env, CASTELLAN_HTTP_PORT: String(port), CASTELLAN_NATS_URL: nats.urls.join(','), POD_NAME: 'forger', POD_NAMESPACE: 'team-b', CASTELLAN_NATS_SA_TOKEN: files.a },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    spawned.push(child);
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(out).toMatch(/cannot connect to NATS.*refused the credentials/);
  }, 120_000);

  it('missing, garbage and wrong-audience tokens are refused', async () => {
    await expect(connect({ servers: nats.urls, reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(rawClient(files.garbage, '', { reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(rawClient(files.wrongAudience, 'team-a', { reconnect: false })).rejects.toThrow(/Authorization/i);
    expect(callout.counts().refused).toBeGreaterThanOrEqual(3);
  }, 120_000);
});

describe('revocation and expiry', () => {
  it("a deleted ServiceAccount's token is refused, and its live connection is cut when its grant expires", async () => {
    await callout.stop();
    callout = startCallout(5_000);
    const nc = await rawClient(files.temp, 'team-a');
    const closed = nc.closed();
    await nc.flush();
    const core = kube.kc.makeApiClient(k8s.CoreV1Api);
    await core.deleteNamespacedServiceAccount({ name: 'temp', namespace: 'team-a' });
    await waitFor('the revoked token to be refused', async () => {
      try {
        const probe = await rawClient(files.temp, 'team-a', { reconnect: false });
        await probe.close();
        return undefined;
      } catch (err) {
        return /Authorization/i.test(String(err)) ? true : undefined;
      }
    }, { timeoutMs: 30_000, intervalMs: 500 });
    // The grant lived 5 s: NATS closes the connection, and its reconnect with the revoked token is refused.
    const result = await Promise.race([closed.then((e) => e ?? 'closed'), new Promise<'open'>((r) => setTimeout(() => r('open'), 60_000))]);
    expect(result).not.toBe('open');
    expect(nc.isClosed()).toBe(true);
  }, 180_000);
});

describe('resources cannot move their data or make the operator dial anywhere', () => {
  const custom = () => kube.kc.makeApiClient(k8s.CustomObjectsApi);
  const create = (namespace: string, kind: 'DurableObject' | 'ReplicatedQueue', name: string, spec: Record<string, unknown>) =>
    custom().createNamespacedCustomObject({ group, version, namespace, plural: kind === 'DurableObject' ? 'durableobjects' : 'replicatedqueues', body: { apiVersion: `${group}/${version}`, kind, metadata: { name }, spec } });
  const patch = (namespace: string, name: string, spec: Record<string, unknown>) =>
    custom().patchNamespacedCustomObject(
      { group, version, namespace, plural: 'replicatedqueues', name, body: { spec } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );

  it('the API server refuses changing or adding nats.prefix and nats.urls (CEL), and accepts other changes', async () => {
    await create('team-a', 'ReplicatedQueue', 'moving', { hosts: 1, replicaCount: 1, nats: { prefix: 'first' } });
    await expect(patch('team-a', 'moving', { nats: { prefix: 'second' } })).rejects.toThrow(/nats.prefix cannot be changed/);
    await expect(patch('team-a', 'moving', { nats: { urls: ['nats://elsewhere:4222'] } })).rejects.toThrow(/nats.urls cannot be changed/);
    await expect(patch('team-a', 'moving', { nats: null })).rejects.toThrow(/nats.prefix cannot be changed/);
    await patch('team-a', 'moving', { visibilityTimeout: '45s' });
    await create('team-a', 'ReplicatedQueue', 'plain', { hosts: 1, replicaCount: 1 });
    await expect(patch('team-a', 'plain', { nats: { urls: ['nats://elsewhere:4222'] } })).rejects.toThrow(/nats.urls cannot be changed/);
  }, 120_000);

  it('the operator (through the callout, one connection per namespace) creates B\'s queue assets in B\'s account and refuses URLs not allowed', async () => {
    const config = loadOperatorConfig(
      {
        identity: 'sec-operator',
        nats: { urls: nats.urls, auth: { serviceAccountToken: files.operator } },
        http: { port: 0 },
        leaderElection: { enabled: false },
        sidecar: { image: 'example.invalid/castellan:test' },
        namespaces: ['team-a', 'team-b'],
        resyncPeriod: '20s',
      },
      {},
    );
    operator = new Operator({ config, kc: kube.kc, log: logger('test.operator') });
    await operator.start();
    await create('team-b', 'ReplicatedQueue', 'orders', { hosts: 1, replicaCount: 1 });
    const op = await rawClient(files.operator, 'team-b');
    const jsm = await jetstreamManager(op, { timeout: 10_000 });
    await waitFor('the operator to create orders\' meta stream in team-b', async () => (await jsm.streams.info('CASTELLAN_QM_team-b_orders').then(() => true, () => undefined)), { timeoutMs: 90_000, intervalMs: 500 });
    const a = await jetstreamManager(await rawClient(files.a, 'team-a'), { timeout: 10_000 });
    await expect(a.streams.info('CASTELLAN_QM_team-b_orders')).rejects.toThrow(/stream not found/);

    await create('team-a', 'DurableObject', 'evil', {
      appPort: 8080,
      nats: { urls: ['nats://10.0.0.1:4222'] },
      template: { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] } },
    });
    const cr = await waitFor(
      'the operator to refuse evil\'s NATS URL',
      async () => {
        const got = (await custom().getNamespacedCustomObject({ group, version, namespace: 'team-a', plural: 'durableobjects', name: 'evil' })) as CR;
        return got.status?.conditions?.some((c) => c.reason === 'NatsUrlNotAllowed') === true ? got : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(cr.status?.conditions?.find((c) => c.reason === 'NatsUrlNotAllowed')?.message).toMatch(/nats:\/\/10.0.0.1:4222/);
    const apps = kube.kc.makeApiClient(k8s.AppsV1Api);
    await expect(apps.readNamespacedStatefulSet({ name: 'evil', namespace: 'team-a' })).rejects.toThrow();
  }, 240_000);
});
