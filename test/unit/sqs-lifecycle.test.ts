/**
 * CreateQueue/DeleteQueue/SetQueueAttributes on Kubernetes (sidecar/sqs/lifecycle.ts):
 * with no `castellan dev` answering on NATS, the sidecar creates, patches and
 * deletes the ReplicatedQueue through the real Kubernetes client against a
 * stand-in API server on loopback that records the requests and answers as
 * kube-apiserver does (201, 404, 409 and a 403 Forbidden Status). A 403 is
 * AccessDenied naming the missing permission; without Kubernetes and dev,
 * UnsupportedOperation.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { defaultSpec } from '../../sidecar/queues/spec.ts';
import { SqsError } from '../../sidecar/sqs/errors.ts';
import { createLifecycle } from '../../sidecar/sqs/lifecycle.ts';

interface Seen {
  method: string;
  path: string;
  type: string;
  body: unknown;
}

/** No `castellan dev` on NATS: every request has no responders. */
const noDev = {
  request: () => {
    const e = new Error('503 no responders available');
    e.name = 'NoRespondersError';
    return Promise.reject(e);
  },
} as unknown as NatsConnection;

describe('SQS queue lifecycle on Kubernetes', () => {
  let server: Server;
  let port: number;
  const seen: Seen[] = [];
  let answer: (req: Seen) => { status: number; body: unknown } = () => ({ status: 200, body: {} });

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const s: Seen = { method: req.method ?? '', path: req.url ?? '', type: req.headers['content-type'] ?? '', body: raw === '' ? undefined : JSON.parse(raw) };
        seen.push(s);
        const a = answer(s);
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(a.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const lifecycle = () =>
    createLifecycle(noDev, 'castellan', 'team-a', {
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1' },
      kubeConfig: () => {
        const kc = new k8s.KubeConfig();
        kc.loadFromOptions({
          clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
          users: [{ name: 'u', token: 'sa-token' }],
          contexts: [{ name: 'x', cluster: 'c', user: 'u', namespace: 'team-a' }],
          currentContext: 'x',
        });
        return kc;
      },
    });

  const forbidden = (verb: string) => ({
    status: 403,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'Forbidden',
      code: 403,
      message: `replicatedqueues.castellan.dev is forbidden: User "system:serviceaccount:team-a:app" cannot ${verb} resource "replicatedqueues" in API group "castellan.dev" in the namespace "team-a"`,
    },
  });

  it('creates the ReplicatedQueue in its namespace, with the queue’s settings', async () => {
    seen.length = 0;
    answer = (r) => ({ status: 201, body: r.body });
    const spec = { ...defaultSpec('orders'), visibilityTimeoutMs: 45_000, deadLetter: { queue: 'dead', maxReceiveCount: 4 } };
    await lifecycle().create(spec);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', path: '/apis/castellan.dev/v1alpha1/namespaces/team-a/replicatedqueues' });
    expect(seen[0]?.body).toEqual({
      apiVersion: 'castellan.dev/v1alpha1',
      kind: 'ReplicatedQueue',
      metadata: { name: 'orders', namespace: 'team-a', labels: { 'castellan.dev/created-by': 'sqs' } },
      spec: { hosts: 3, replicaCount: 2, visibilityTimeout: '45s', messageRetention: '345600s', maxMessageBytes: 262144, delay: '0s', deadLetter: { queue: 'dead', maxReceiveCount: 4 }, deletionPolicy: 'Delete' },
    });
  });

  it('answers AccessDenied naming the missing permission when RBAC forbids it', async () => {
    answer = () => forbidden('create');
    const create = await lifecycle()
      .create(defaultSpec('orders'))
      .then(() => undefined, (e: unknown) => e);
    expect(create).toBeInstanceOf(SqsError);
    expect(create).toMatchObject({ type: 'AccessDenied', status: 403 });
    expect((create as SqsError).message).toMatch(/missing RBAC permission: create on replicatedqueues in API group castellan\.dev/);
    answer = () => forbidden('delete');
    const del = await lifecycle()
      .delete('orders')
      .then(() => undefined, (e: unknown) => e);
    expect((del as SqsError).message).toMatch(/missing RBAC permission: delete on replicatedqueues/);
    answer = () => forbidden('patch');
    const upd = await lifecycle()
      .update(defaultSpec('orders'))
      .then(() => undefined, (e: unknown) => e);
    expect((upd as SqsError).message).toMatch(/missing RBAC permission: patch on replicatedqueues/);
  });

  it('patches settings with a merge patch (removing the dead letter) and deletes; 404/409 are fine', async () => {
    seen.length = 0;
    answer = () => ({ status: 200, body: {} });
    await lifecycle().update({ ...defaultSpec('orders'), delayMs: 2_000 });
    expect(seen[0]).toMatchObject({ method: 'PATCH', path: '/apis/castellan.dev/v1alpha1/namespaces/team-a/replicatedqueues/orders', type: 'application/merge-patch+json' });
    expect(seen[0]?.body).toEqual({ spec: { replicaCount: 2, visibilityTimeout: '30s', messageRetention: '345600s', maxMessageBytes: 262144, delay: '2s', deadLetter: null } });
    answer = () => ({ status: 404, body: { kind: 'Status', code: 404, reason: 'NotFound' } });
    await lifecycle().delete('gone');
    expect(seen[1]).toMatchObject({ method: 'DELETE', path: '/apis/castellan.dev/v1alpha1/namespaces/team-a/replicatedqueues/gone' });
    answer = () => ({ status: 409, body: { kind: 'Status', code: 409, reason: 'AlreadyExists' } });
    await lifecycle().create(defaultSpec('orders'));
  });

  it('without Kubernetes or castellan dev: UnsupportedOperation', async () => {
    const none = createLifecycle(noDev, 'castellan', 'team-a', { env: {} });
    await expect(none.create(defaultSpec('x'))).rejects.toMatchObject({ type: 'UnsupportedOperation' });
  });
});
