/**
 * Who may call what without the auth callout (docs/security.md §3): a plain
 * 3-node NATS, every sidecar in one account, so the identity a call names is
 * the one its sidecar states (POD_NAMESPACE, CASTELLAN_SERVICE_ACCOUNT):
 * enforced, not verified. Object hosts of namespace team-b allow team-a's
 * ServiceAccount `web`; team-a's callers reach them with
 * `castellan-namespace: team-b` through the class's door, follow the owner,
 * and get 403 FORBIDDEN when not listed. The secured path, where NATS binds
 * the identity to a token, is security-access.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startApp, startSidecar, stopProc, waitHttp, type SidecarProc } from '../harness/sidecars.ts';

let nats: TestNats;
const procs: SidecarProc[] = [];
let web: SidecarProc;
let batch: SidecarProc;
let own: SidecarProc;

async function post(base: string, path: string, namespace?: string): Promise<{ status: number; body: { value?: number; error?: { code: string; message: string } } }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: namespace === undefined ? {} : { 'castellan-namespace': namespace }, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: (await res.json()) as { value?: number; error?: { code: string; message: string } } };
}

beforeAll(async () => {
  nats = await startNats(3);
  const b = { POD_NAMESPACE: 'team-b', CASTELLAN_ACCESS_CALLERS: JSON.stringify([{ namespace: 'team-a', serviceAccounts: ['web'] }]) };
  const hosts = await Promise.all(
    ['b-h0', 'b-h1'].map(async (name) => {
      const app = await startApp(`${name}-app`);
      const sc = await startSidecar(name, nats.urls, { CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: 'counter', CASTELLAN_APP_PORT: String(app.port), ...b }, { wait: false });
      sc.app = app;
      return sc;
    }),
  );
  const clients = await Promise.all([
    startSidecar('a-web', nats.urls, { CASTELLAN_ROLE: 'client', POD_NAMESPACE: 'team-a', CASTELLAN_SERVICE_ACCOUNT: 'web' }, { wait: false }),
    startSidecar('a-batch', nats.urls, { CASTELLAN_ROLE: 'client', POD_NAMESPACE: 'team-a', CASTELLAN_SERVICE_ACCOUNT: 'batch' }, { wait: false }),
    startSidecar('b-own', nats.urls, { CASTELLAN_ROLE: 'client', POD_NAMESPACE: 'team-b' }, { wait: false }),
  ]);
  procs.push(...hosts, ...clients);
  [web, batch, own] = clients as [SidecarProc, SidecarProc, SidecarProc];
  for (const p of procs) await waitHttp(`${p.url}/readyz`, 180_000);
}, 300_000);

afterAll(async () => {
  await Promise.allSettled(procs.map((p) => stopProc(p, 'SIGKILL')));
  await nats?.cluster.shutdown();
}, 60_000);

describe('cross-namespace object calls on a plain NATS', () => {
  it('a listed caller reaches the objects of another namespace, wherever they live, and sees the same state as their namespace', async () => {
    // Several ids: some are claimed by the host the door picked, some are redirected to their owner.
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) {
      expect((await post(web.url, `/v1/objects/counter/${id}/increment`, 'team-b')).body.value).toBe(1);
      expect((await post(own.url, `/v1/objects/counter/${id}/increment`)).body.value).toBe(2);
      expect((await post(web.url, `/v1/objects/counter/${id}/increment`, 'team-b')).body.value).toBe(3);
    }
  }, 120_000);

  it('an unlisted ServiceAccount gets 403 FORBIDDEN and nothing runs', async () => {
    const r = await post(batch.url, '/v1/objects/counter/a/increment', 'team-b');
    expect([r.status, r.body.error?.code]).toEqual([403, 'FORBIDDEN']);
    expect(r.body.error?.message).toContain('team-a/batch');
    expect((await post(own.url, '/v1/objects/counter/a/increment')).body.value).toBe(4);
  }, 60_000);

  it('a namespace with no such class: 503 naming the reasons; a bad namespace name: 400', async () => {
    const r = await post(web.url, '/v1/objects/counter/a/increment', 'team-z');
    expect([r.status, r.body.error?.code]).toEqual([503, 'OBJECT_UNAVAILABLE']);
    expect(r.body.error?.message).toMatch(/does not exist, has no ready host, or NATS does not route/);
    expect((await post(web.url, '/v1/objects/counter/a/increment', 'Team_Z')).body.error?.code).toBe('INVALID_NAMESPACE');
  }, 60_000);
});
