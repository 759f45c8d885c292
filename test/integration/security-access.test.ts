/**
 * Who may call what (issue 16, item 3), with real parts only: a
 * kube-apiserver issuing projected ServiceAccount tokens and answering
 * TokenReviews, a nats-server in auth-callout mode with one account per
 * namespace, where team-b and team-c export their object and queue RPC
 * subjects to team-a (the NATS administrator's service imports,
 * docs/security.md §3), the Castellan auth callout, and sidecars as real
 * processes.
 *
 * team-b's class `counter` allows team-a's ServiceAccount `web`; team-c's
 * class `counter` says nothing (default: its own namespace only). team-a/web
 * calls B's object (works, same object B's own client sees); team-a/batch
 * and anyone calling C get 403 FORBIDDEN; forged identities in the subject
 * are refused by NATS, a forged CASTELLAN_SERVICE_ACCOUNT changes nothing;
 * queue hosts enforce their policy (and never take replication from another
 * namespace); team-a/web uses B's queue through its door (send, receive,
 * delete) and team-a/batch gets 403 there; listing and storage naming
 * another namespace are 403. docs/security.md has the table.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { createAccount } from '@nats-io/nkeys';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { waitFor } from '../../common/net.ts';
import { natsSecurityOptions } from '../../common/nats-security.ts';
import { NatsCluster } from '../../local/nats-cluster.ts';
import { startAuthCallout, type AuthCallout } from '../../operator/authcallout/service.ts';
import { kubeTokenReviewer } from '../../operator/authcallout/token-review.ts';
import { decodeEnvelope, encodeEnvelope, type ReplyMeta, type RequestMeta } from '../../sidecar/objects/wire.ts';
import { installCrds, serviceAccountToken, startKube, type TestKube } from '../harness/kube.ts';
import { queueEnv } from '../harness/queues.ts';
import { startApp, startSidecar, stopProc, waitHttp, type SidecarProc } from '../harness/sidecars.ts';

const dir = mkdtempSync(join(tmpdir(), 'castellan-security-access-'));
const log = logger('test.access');
const enc = new TextEncoder();
let kube: TestKube;
let nats: NatsCluster;
let callout: AuthCallout;
let calloutNc: NatsConnection;
const calloutPassword = randomBytes(12).toString('hex');
const tokens: Record<string, string> = {};
const procs: SidecarProc[] = [];
const raw: NatsConnection[] = [];
const clients: Record<string, SidecarProc> = {};

const saToken = (namespace: string, name: string, audiences?: string[]): Promise<string> => serviceAccountToken(kube, dir, namespace, name, audiences);

async function rawClient(tokenFile: string, namespace: string): Promise<NatsConnection> {
  const nc = await connect({ ...natsSecurityOptions({ auth: { serviceAccountToken: tokenFile }, tls: {} }, { namespace }), servers: nats.urls, timeout: 10_000 });
  raw.push(nc);
  return nc;
}

interface Answer {
  status: number;
  body: { value?: number; error?: { code: string; message: string; retryable: boolean }; messages?: { body: string; receiptHandle: string }[]; replicas?: string[] };
}

async function http(base: string, method: string, path: string, namespace?: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = { ...(namespace === undefined ? {} : { 'castellan-namespace': namespace }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Answer['body']) };
}

const env = (namespace: string, sa: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ CASTELLAN_NATS_SA_TOKEN: tokens[`${namespace}/${sa}`], POD_NAMESPACE: namespace, ...extra });

beforeAll(async () => {
  kube = await startKube(1);
  const core = kube.kc.makeApiClient(k8s.CoreV1Api);
  for (const ns of ['team-a', 'team-b', 'team-c']) await core.createNamespace({ body: { metadata: { name: ns } } });
  const sas = ['team-a/web', 'team-a/batch', 'team-b/app', 'team-c/app'];
  for (const id of sas) {
    const [namespace, name] = id.split('/') as [string, string];
    await waitFor(`ServiceAccount ${id}`, async () => (await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } }), true), { timeoutMs: 30_000, intervalMs: 500 });
    tokens[id] = await saToken(namespace, name);
  }
  const crds = installCrds(kube);

  const issuer = createAccount();
  const exported = (ns: string) => `exports: [ { service: "castellan.rpc.${ns}.>", accounts: ["team-a"] }, { service: "castellan.qrpc.${ns}.>", accounts: ["team-a"] } ]`;
  const imported = (ns: string) => `{ service: { account: "${ns}", subject: "castellan.rpc.${ns}.>" } }, { service: { account: "${ns}", subject: "castellan.qrpc.${ns}.>" } }`;
  nats = await NatsCluster.start({
    servers: 1,
    dir: join(dir, 'nats'),
    security: {
      config: [
        'accounts {',
        `  AUTH: { users: [ { user: "callout", password: "${calloutPassword}" } ] }`,
        `  "team-a": { jetstream: enabled, imports: [ ${imported('team-b')}, ${imported('team-c')} ] }`,
        `  "team-b": { jetstream: enabled, ${exported('team-b')} }`,
        `  "team-c": { jetstream: enabled, ${exported('team-c')} }`,
        '}',
        'authorization {',
        // The server waits this long (seconds) for the callout. On a loaded machine a TokenReview can take
        // longer than nats.js's 20 s connect timeout: the client then times out and retries (not fatal),
        // instead of being refused (fatal) by a server that gave up first.
        '  timeout: 60',
        `  auth_callout { issuer: "${issuer.getPublicKey()}", auth_users: [ "callout" ], account: AUTH }`,
        '}',
      ].join('\n'),
    },
  });
  calloutNc = await connect({ servers: nats.urls, user: 'callout', pass: calloutPassword, maxReconnectAttempts: -1 });
  callout = startAuthCallout({
    nc: calloutNc,
    issuerSeed: new TextDecoder().decode(issuer.getSeed()),
    review: kubeTokenReviewer(kube.kc, 'castellan'),
    policy: { audience: 'castellan', admins: [], accountPrefix: '', maxTtlMs: 0 },
    log,
  });

  const allowWeb = JSON.stringify([{ namespace: 'team-a', serviceAccounts: ['web'] }]);
  const host = async (name: string, extra: NodeJS.ProcessEnv) => {
    const app = await startApp(`${name}-app`);
    const sc = await startSidecar(name, nats.urls, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: 'counter', CASTELLAN_APP_PORT: String(app.port), ...extra }, { wait: false });
    sc.app = app;
    return sc;
  };
  const client = (name: string, extra: NodeJS.ProcessEnv) => startSidecar(name, nats.urls, { CASTELLAN_ROLE: 'client', ...extra }, { wait: false });
  // One after the other (each picks a free port), without waiting for readiness.
  const started: SidecarProc[] = [];
  started.push(await host('b-counter-0', env('team-b', 'app', { CASTELLAN_ACCESS_CALLERS: allowWeb })));
  started.push(await host('c-counter-0', env('team-c', 'app')));
  started.push(await client('a-web', env('team-a', 'web')));
  // Claims to be `web` in its environment; its token says `batch`.
  started.push(await client('a-batch', env('team-a', 'batch', { CASTELLAN_SERVICE_ACCOUNT: 'web' })));
  started.push(await client('b-client', env('team-b', 'app')));
  started.push(await startSidecar('jobs-0', nats.urls, { ...queueEnv('jobs', { hosts: 1, replicaCount: 1 }), ...env('team-b', 'app', { CASTELLAN_ACCESS_CALLERS: allowWeb }) }, { wait: false }));
  procs.push(...started);
  [, , clients.aWeb, clients.aBatch, clients.b] = started as [SidecarProc, SidecarProc, SidecarProc, SidecarProc, SidecarProc, SidecarProc];
  // Started together, then awaited with room for a loaded machine (a sidecar may need most of a minute to load there).
  for (const p of started) await waitHttp(`${p.url}/readyz`, 180_000);
  await crds;
}, 300_000);

afterAll(async () => {
  await Promise.allSettled(raw.map((nc) => nc.close()));
  await Promise.allSettled(procs.map((p) => stopProc(p, 'SIGKILL')));
  await callout?.stop().catch(() => undefined);
  await calloutNc?.close().catch(() => undefined);
  await nats?.shutdown();
  await kube?.dispose();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('object calls across namespaces', () => {
  it("an allowed ServiceAccount of another namespace calls B's object: the same object B's own client sees", async () => {
    const a1 = await http(clients.aWeb!.url, 'POST', '/v1/objects/counter/shared/increment', 'team-b');
    expect([a1.status, a1.body.value]).toEqual([200, 1]);
    const a2 = await http(clients.aWeb!.url, 'POST', '/v1/objects/counter/shared/increment', 'team-b');
    expect(a2.body.value).toBe(2);
    // Default: the own namespace may call, every ServiceAccount of it.
    const b = await http(clients.b!.url, 'POST', '/v1/objects/counter/shared/increment');
    expect([b.status, b.body.value]).toEqual([200, 3]);
    // Naming the own namespace is the same as naming none.
    expect((await http(clients.b!.url, 'POST', '/v1/objects/counter/shared/increment', 'team-b')).body.value).toBe(4);
  }, 60_000);

  it('another ServiceAccount of that namespace gets 403 FORBIDDEN, even when its environment claims the allowed one', async () => {
    const r = await http(clients.aBatch!.url, 'POST', '/v1/objects/counter/shared/increment', 'team-b');
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({ code: 'FORBIDDEN', retryable: false });
    expect(r.body.error!.message).toContain('team-a/batch');
    expect(r.body.error!.message).toContain('DurableObject team-b/counter');
    // The refused call did not run: B's next increment is the 5th.
    expect((await http(clients.b!.url, 'POST', '/v1/objects/counter/shared/increment')).body.value).toBe(5);
  }, 60_000);

  it('a class that lists no callers refuses every other namespace (default: own namespace)', async () => {
    const r = await http(clients.aWeb!.url, 'POST', '/v1/objects/counter/x/increment', 'team-c');
    expect([r.status, r.body.error?.code]).toEqual([403, 'FORBIDDEN']);
    expect(r.body.error!.message).toContain('DurableObject team-c/counter');
  }, 60_000);
});

describe('forged identities', () => {
  const request = (cls: string, id: string): Uint8Array =>
    encodeEnvelope({ v: 1, cls, id, method: 'POST', path: '/increment', query: '', headers: [['castellan-caller', 'team-a/web']], rid: randomBytes(8).toString('hex'), timeoutMs: 5_000 } satisfies RequestMeta);

  it('a connection cannot name another ServiceAccount or namespace in a call subject: NATS refuses the publish', async () => {
    const nc = await rawClient(tokens['team-a/batch']!, 'team-a');
    for (const subject of ['castellan.rpc.team-b.counter._.team-a.web', 'castellan.rpc.team-b.counter._.team-b.app', 'castellan.rpc.team-b.counter._', 'castellan.qrpc.team-b.jobs.jobs-0.team-a.web']) {
      await expect(nc.request(subject, request('counter', 'shared'), { timeout: 5_000 })).rejects.toThrow(/Permissions Violation for Publish/);
    }
  }, 60_000);

  it('under its own identity, with a header claiming another, it gets 403 from the target host', async () => {
    const nc = await rawClient(tokens['team-a/batch']!, 'team-a');
    const m = await nc.request('castellan.rpc.team-b.counter._.team-a.batch', request('counter', 'shared'), { timeout: 10_000 });
    const reply = decodeEnvelope<ReplyMeta>(m.data).meta;
    expect(reply).toMatchObject({ t: 'error', status: 403, code: 'FORBIDDEN' });
    // The allowed identity, raw, is served: the identity is the subject's, nothing else.
    const web = await rawClient(tokens['team-a/web']!, 'team-a');
    const ok = decodeEnvelope<ReplyMeta>((await web.request('castellan.rpc.team-b.counter._.team-a.web', request('counter', 'raw'), { timeout: 10_000 })).data).meta;
    expect(ok).toMatchObject({ t: 'ok', status: 200 });
  }, 60_000);
});

describe('queues', () => {
  const stats = enc.encode(JSON.stringify({ op: 'stats' }));
  it('the queue host answers an allowed caller of another namespace, refuses others with 403, and never takes replication from another namespace', async () => {
    const web = await rawClient(tokens['team-a/web']!, 'team-a');
    const batch = await rawClient(tokens['team-a/batch']!, 'team-a');
    const ask = async (nc: NatsConnection, id: string, body: Uint8Array) => JSON.parse(new TextDecoder().decode((await nc.request(`castellan.qrpc.team-b.jobs.jobs-0.${id}`, body, { timeout: 10_000 })).data)) as { ok: boolean; code?: string; status?: number };
    expect(await ask(web, 'team-a.web', stats)).toMatchObject({ ok: true });
    expect(await ask(batch, 'team-a.batch', stats)).toMatchObject({ ok: false, status: 403, code: 'FORBIDDEN' });
    const replicate = enc.encode(JSON.stringify({ op: 'states', items: [] }));
    expect(await ask(web, 'team-a.web', replicate)).toMatchObject({ ok: false, status: 403, code: 'FORBIDDEN' });
  }, 60_000);

  it("an allowed ServiceAccount uses B's queue through its door; another gets 403 and nothing is sent", async () => {
    const sent = await http(clients.aWeb!.url, 'POST', '/v1/queues/jobs/messages', 'team-b', { body: 'from team-a' });
    expect([sent.status, sent.body.replicas]).toEqual([201, ['jobs-0']]);
    // B's own client receives it: the same queue.
    const atB = await http(clients.b!.url, 'POST', '/v1/queues/jobs/receive', undefined, { maxMessages: 1, waitSeconds: 5 });
    expect(atB.body.messages?.map((m) => m.body)).toEqual(['from team-a']);
    expect((await http(clients.b!.url, 'DELETE', `/v1/queues/jobs/messages/${encodeURIComponent(atB.body.messages![0]!.receiptHandle)}`)).status).toBe(204);
    // The other way round: B sends; A receives (a long poll through the door) and deletes with the receipt handle.
    expect((await http(clients.b!.url, 'POST', '/v1/queues/jobs/messages', undefined, { body: 'from team-b' })).status).toBe(201);
    const atA = await http(clients.aWeb!.url, 'POST', '/v1/queues/jobs/receive', 'team-b', { maxMessages: 10, waitSeconds: 5 });
    expect(atA.body.messages?.map((m) => m.body)).toEqual(['from team-b']);
    const handle = encodeURIComponent(atA.body.messages![0]!.receiptHandle);
    expect((await http(clients.aWeb!.url, 'DELETE', `/v1/queues/jobs/messages/${handle}`, 'team-b')).status).toBe(204);
    // team-a/batch (whatever its environment claims) is refused by B's queue host, before anything runs.
    const refused = await http(clients.aBatch!.url, 'POST', '/v1/queues/jobs/messages', 'team-b', { body: 'from batch' });
    expect([refused.status, refused.body.error?.code]).toEqual([403, 'FORBIDDEN']);
    expect(refused.body.error?.message).toContain('team-a/batch');
    const purge = await http(clients.aBatch!.url, 'POST', '/v1/queues/jobs/purge', 'team-b');
    expect([purge.status, purge.body.error?.code]).toEqual([403, 'FORBIDDEN']);
    const left = await http(clients.b!.url, 'POST', '/v1/queues/jobs/receive', undefined, { maxMessages: 10, waitSeconds: 1 });
    expect(left.body.messages).toEqual([]);
    // A queue of a namespace that did not export it to team-a (or does not exist): 503, never another namespace's answer.
    const none = await http(clients.aWeb!.url, 'POST', '/v1/queues/jobs/messages', 'team-z', { body: 'x' });
    expect([none.status, none.body.error?.code]).toEqual([503, 'QUEUE_UNAVAILABLE']);
  }, 60_000);

  it('storage and listing naming another namespace are 403 at the caller sidecar', async () => {
    for (const [method, path] of [
      ['GET', '/v1/classes/counter/objects'],
      ['GET', '/v1/classes/counter/objects/shared'],
      ['DELETE', '/v1/classes/counter/objects/shared'],
      ['GET', '/v1/storage/counter/shared/keys/count'],
    ] as const) {
      const r = await http(clients.aWeb!.url, method, path, 'team-b');
      expect([path, r.status, r.body.error?.code]).toEqual([path, 403, 'FORBIDDEN']);
    }
    // B's object is still there, with its value (the refused DELETE did nothing).
    expect((await http(clients.b!.url, 'POST', '/v1/objects/counter/shared/increment')).body.value).toBe(6);
  }, 60_000);
});

describe('the CRD field', () => {
  it('is accepted on both kinds and checked by the API server', async () => {
    const custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    const make = (kind: 'DurableObject' | 'ReplicatedQueue', name: string, access: unknown) =>
      custom.createNamespacedCustomObject({
        group: 'castellan.dev',
        version: 'v1alpha1',
        namespace: 'team-b',
        plural: kind === 'DurableObject' ? 'durableobjects' : 'replicatedqueues',
        body: {
          apiVersion: 'castellan.dev/v1alpha1',
          kind,
          metadata: { name },
          spec: { access, ...(kind === 'DurableObject' ? { appPort: 8080, template: { spec: { containers: [{ name: 'app', image: 'x' }] } } } : {}) },
        },
      });
    await make('DurableObject', 'counter', { callers: [{ namespace: 'team-a', serviceAccounts: ['web'] }] });
    await make('ReplicatedQueue', 'jobs', { callers: [{ namespace: 'team-a' }] });
    await expect(make('DurableObject', 'bad', { callers: [{ namespace: 'Team A' }] })).rejects.toThrow(/access.callers\[0\].namespace/);
    await expect(make('ReplicatedQueue', 'bad', { callers: [{ namespace: 'team-a', serviceAccounts: [] }] })).rejects.toThrow(/serviceAccounts/);
  }, 60_000);
});
