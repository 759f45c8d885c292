/**
 * Turns of durable objects (issue 12, items 1, 2 and 5): real 3-node NATS,
 * an object host running the serial test app (it records how many handlers
 * of one object run at once) and a client sidecar, as real processes.
 * A turn ends when the app answered, not when the caller stopped waiting;
 * past turnTimeout the object is stuck (503 OBJECT_STUCK), and a write from
 * the stuck handler is refused (410) and changes nothing; request ids are
 * scoped to the object; an app killed mid-handler ends its turn.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { logger } from '../../common/logger.ts';
import { projectRoot } from '../../common/paths.ts';
import { readHostRecords, stuckWarnings } from '../../operator/assets/object-hosts.ts';
import { waitFor } from '../../common/net.ts';
import { restartApp, startPatientClient, startStorageHost } from '../harness/apps/storage-host.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { logDir, signal, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const serialApp = join(projectRoot, 'test', 'harness', 'apps', 'serial-app.ts');
const CLS = 'serial';
const log = logger('test.objects-turns');
const env = { CASTELLAN_LEASE_TTL: '3s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };

interface Stats {
  maxConcurrent: Record<string, number>;
  seen: Record<string, number>;
  writes: { id: string; key: string; rid: string; status: number; code: string }[];
}

describe('durable objects: turns', () => {
  let nats: TestNats;
  let host: SidecarProc;
  let client: SidecarProc;

  beforeAll(async () => {
    nats = await startNats(3);
    host = await startStorageHost('t-h0', CLS, nats.urls, { ...env, CASTELLAN_TURN_TIMEOUT: '12s' }, serialApp);
    client = await startPatientClient('t-c0', nats.urls, env);
    console.log(`sidecar logs in ${logDir}`);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([host, client].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const call = (id: string, rest: string, init: RequestInit = {}) =>
    fetch(`${client.url}/v1/objects/${CLS}/${encodeURIComponent(id)}${rest}`, { method: 'POST', ...init, signal: AbortSignal.timeout(30_000) });
  const answer = async (id: string, rest: string, init: RequestInit = {}) => {
    const r = await call(id, rest, init);
    const text = await r.text();
    return { status: r.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  const stats = async (): Promise<Stats> => (await (await fetch(`${host.app!.url}/stats`)).json()) as Stats;

  it('40 concurrent 1 s calls on one id never run two handlers at once, though callers time out', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, () => answer('hot', '/work?ms=1000')));
    const ok = results.filter((r) => r.status === 200).length;
    const timedOut = results.filter((r) => r.status === 504).length;
    console.log(`40 calls: ${ok} answered, ${timedOut} timed out, others ${results.filter((r) => r.status !== 200 && r.status !== 504).map((r) => r.status).join(',')}`);
    expect(ok).toBeGreaterThanOrEqual(1);
    // Let every handler that started finish, then look.
    await waitFor('object idle', async () => ((await answer('hot', '/work?ms=0')).status === 200 ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    const s = await stats();
    expect(s.seen.hot).toBeGreaterThanOrEqual(2);
    expect(s.maxConcurrent.hot).toBe(1);
  }, 120_000);

  it('a handler that outlives its caller keeps the object busy: the next call waits for it', async () => {
    const first = answer('outlive', '/work?ms=7000&write=first');
    // Start the second call once the first is running in the app.
    await waitFor('first handler running', async () => ((await stats()).seen.outlive === 1 ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    const f = await first;
    expect(f.status).toBe(504);
    const second = await answer('outlive', '/work?ms=0&read=first');
    expect(second.status).toBe(200);
    // The second ran after the first's write: it sees it.
    expect(second.json().read).toMatchObject({ status: 200 });
    const s = await stats();
    expect(s.maxConcurrent.outlive).toBe(1);
    expect(s.writes.filter((w) => w.id === 'outlive')).toEqual([expect.objectContaining({ key: 'first', status: 200 })]);
  }, 60_000);

  it('a handler past turnTimeout marks the object stuck; its late write is refused; the object is served again after it answers', async () => {
    const stuck = answer('stuck', '/work?ms=20000&write=late');
    await waitFor('stuck handler running', async () => ((await stats()).seen.stuck === 1 ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    // Past turnTimeout (12 s): new callers get 503 OBJECT_STUCK, retryable; the host says so.
    const refused = await waitFor(
      'OBJECT_STUCK',
      async () => {
        const r = await answer('stuck', '/work?ms=0&write=intruder');
        return r.status === 503 ? r : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(refused.json()).toMatchObject({ error: { code: 'OBJECT_STUCK', retryable: true } });
    const ready = await (await fetch(`${host.url}/readyz`)).json();
    expect(JSON.stringify(ready)).toMatch(/stuck/);
    expect(await (await fetch(`${host.url}/metrics`)).text()).toMatch(/castellan_object_stuck_total\{class="serial"[^}]*\} [1-9]/);
    // The host's heartbeat reports it; the operator reads that and records a Warning Event.
    const nc = await nats.connect();
    const target = { prefix: 'castellan', namespace: 'default', cls: CLS };
    const warned = await waitFor(
      'stuck object in the host record',
      async () => {
        const w = stuckWarnings(CLS, await readHostRecords(nc, target, log), Date.now(), 30_000);
        return w.length > 0 ? w : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    expect(warned).toEqual([expect.objectContaining({ reason: 'ObjectStuck', message: expect.stringMatching(/serial\/stuck on pod t-h0/) })]);
    expect((await stuck).status).toBe(504);
    // The late write was refused with 410 and wrote nothing.
    const late = await waitFor('late write attempted', async () => (await stats()).writes.find((w) => w.id === 'stuck' && w.key === 'late'), { timeoutMs: 30_000, intervalMs: 100 });
    expect(late).toMatchObject({ status: 410, code: 'TURN_NOT_RUNNING' });
    const after = await waitFor(
      'object served again',
      async () => {
        const r = await answer('stuck', '/work?ms=0&read=late');
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(after.json().read).toMatchObject({ status: 404 });
    const s = await stats();
    expect(s.maxConcurrent.stuck).toBe(1);
    expect(s.writes.filter((w) => w.id === 'stuck' && w.key === 'intruder')).toEqual([]);
    expect(JSON.stringify(await (await fetch(`${host.url}/readyz`)).json())).not.toMatch(/stuck/);
    await waitFor('no stuck object in the host record', async () => (stuckWarnings(CLS, await readHostRecords(nc, target, log), Date.now(), 30_000).length === 0 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  }, 120_000);

  it('refuses storage calls from outside a running turn with 410, and 409 NOT_OWNER elsewhere', async () => {
    expect((await answer('outside', '/work?ms=0&write=x')).status).toBe(200);
    const r = await fetch(`${host.url}/v1/storage/${CLS}/outside/keys/x`, { method: 'PUT', body: 'sneaky' });
    expect(r.status).toBe(410);
    expect(await r.json()).toMatchObject({ error: { code: 'TURN_NOT_RUNNING' } });
    const c = await fetch(`${client.url}/v1/storage/${CLS}/outside/keys/x`);
    expect(c.status).toBe(409);
    await c.arrayBuffer();
    const read = await answer('outside', '/work?ms=0&read=x');
    expect(read.json().read).toMatchObject({ status: 200, value: expect.not.stringContaining('sneaky') });
  }, 30_000);

  it('scopes request ids to the object: the same id on another object runs; a repeat on one object does not', async () => {
    const headers = { 'castellan-request-id': 'shared-rid-1' };
    const a = (await answer('rid-a', '/rid', { headers })).json();
    const b = (await answer('rid-b', '/rid', { headers })).json();
    expect(a).toMatchObject({ id: 'rid-a', n: 1 });
    expect(b).toMatchObject({ id: 'rid-b', n: 1 });
    const again = (await answer('rid-a', '/rid', { headers })).json();
    expect(again).toEqual(a);
  }, 30_000);

  it('an object calling another object on the same host with its own request id does not deadlock', async () => {
    const r = await answer('caller', '/call?target=callee', { headers: { 'castellan-request-id': 'chain-rid-1' } });
    expect(r.status).toBe(200);
    const inner = r.json() as { status: number; body: string };
    expect(inner.status).toBe(200);
    expect(JSON.parse(inner.body)).toMatchObject({ id: 'callee', rid: 'chain-rid-1', n: 1 });
  }, 30_000);

  it('an app killed during a handler ends the turn at once; the object is served after the app returns', async () => {
    const pending = answer('killed', '/work?ms=20000');
    await waitFor('handler running', async () => ((await stats()).seen.killed === 1 ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    signal(host.app!, 'SIGKILL');
    const r = await pending;
    expect(r.status).toBe(503);
    expect(r.json()).toMatchObject({ error: { code: 'OBJECT_UNAVAILABLE' } });
    await restartApp(host, serialApp);
    const again = await waitFor(
      'served again',
      async () => {
        const x = await answer('killed', '/work?ms=0&write=after');
        return x.status === 200 ? x : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(again.json().write).toMatchObject({ status: 200 });
  }, 60_000);
});
