/**
 * Alarms end to end (SPEC §2.2): an alarm fires into the object's app as
 * `POST /.castellan/alarm` with the retry count; a failing handler is retried
 * with exponential backoff from 2 s; an alarm fires after the host that set it
 * was killed -9. Real 3-node NATS; the test app (storage-app.ts) records every
 * alarm call in its own storage.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { jetstreamManager } from '@nats-io/jetstream';
import { sleep, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startStorageHost } from '../harness/apps/storage-host.ts';
import { logDir, signal, startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const CLS = 'alarmed';
const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '10s', CASTELLAN_UNAVAILABLE_WAIT: '5s' };

interface Call {
  retryCount: number;
  t: number;
  pid: number;
}

describe('alarms', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  let client: SidecarProc;

  beforeAll(async () => {
    nats = await startNats(3);
    for (let i = 0; i < 3; i++) hosts.push(await startStorageHost(`al-h${i}`, CLS, nats.urls, env));
    client = await startClient('al-c0', nats.urls, env);
    console.log(`sidecar logs in ${logDir}`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...hosts, client].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const s = (id: string, rest: string, init: RequestInit = {}) => fetch(`${client.url}/v1/objects/${CLS}/${encodeURIComponent(id)}/s${rest}`, init);
  const setAlarm = async (id: string, at: number | string) => {
    const r = await s(id, '/alarm', { method: 'PUT', body: JSON.stringify({ at }) });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
  };
  const calls = async (id: string): Promise<Call[]> => {
    const r = await s(id, '/keys/alarm-calls');
    if (r.status === 404) {
      await r.arrayBuffer();
      return [];
    }
    const text = await r.text();
    if (r.status !== 200) throw new Error(`reading alarm calls: ${r.status} ${text}`);
    return JSON.parse(text) as Call[];
  };
  const waitCalls = (id: string, n: number, timeoutMs: number) =>
    waitFor(`${n} alarm calls of ${id}`, async () => {
      try {
        const c = await calls(id);
        return c.length >= n ? c : undefined;
      } catch {
        return undefined;
      }
    }, { timeoutMs, intervalMs: 250 });

  it('fires once when due, with retry count 0, and is gone afterwards', async () => {
    const setAt = Date.now();
    await setAlarm('a1', new Date(setAt + 1_500).toISOString());
    const c = await waitCalls('a1', 1, 30_000);
    expect(c[0]!.retryCount).toBe(0);
    expect(c[0]!.t).toBeGreaterThanOrEqual(setAt + 1_400);
    await sleep(2_000);
    expect((await calls('a1')).length).toBe(1);
    const g = await s('a1', '/alarm');
    expect(g.status).toBe(404);
    await g.arrayBuffer();
  }, 60_000);

  it('an alarm in the past fires at once; a deleted alarm does not fire', async () => {
    await setAlarm('a2', Date.now() - 10_000);
    await waitCalls('a2', 1, 20_000);
    await setAlarm('a3', Date.now() + 1_500);
    const d = await s('a3', '/alarm', { method: 'DELETE' });
    expect(await d.json()).toEqual({ deleted: true });
    await sleep(4_000);
    expect(await calls('a3')).toEqual([]);
  }, 60_000);

  it('setting the alarm again replaces it (one alarm per object)', async () => {
    const first = Date.now() + 4_000;
    await setAlarm('a6', first);
    await setAlarm('a6', Date.now() + 3_600_000);
    const replacedAt = Date.now();
    await sleep(Math.max(0, first - Date.now()) + 3_000);
    // Only meaningful if the replacement was in place before the first was due.
    if (replacedAt < first) expect(await calls('a6')).toEqual([]);
    await setAlarm('a6', Date.now() + 500);
    const c = await waitCalls('a6', 1, 20_000);
    await sleep(1_500);
    expect((await calls('a6')).length).toBe(c.length);
    expect(c).toHaveLength(1);
  }, 60_000);

  it('retries a failing handler with exponential backoff from 2 s', async () => {
    const put = await s('a4', '/keys/alarm-fail', { method: 'PUT', body: '2' });
    expect(put.status).toBe(200);
    await put.arrayBuffer();
    await setAlarm('a4', Date.now() + 300);
    const c = await waitCalls('a4', 3, 60_000);
    expect(c.map((x) => x.retryCount)).toEqual([0, 1, 2]);
    const gap1 = c[1]!.t - c[0]!.t;
    const gap2 = c[2]!.t - c[1]!.t;
    console.log(`alarm retry gaps: ${gap1} ms, ${gap2} ms`);
    expect(gap1).toBeGreaterThanOrEqual(1_900);
    expect(gap2).toBeGreaterThanOrEqual(3_900);
    await sleep(3_000);
    expect((await calls('a4')).length).toBe(3);
  }, 90_000);

  it('keeps firing after the shared consumer was deleted (hosts re-create it)', async () => {
    const nc = await nats.connect();
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(`CASTELLAN_OBJ_default_${CLS}`, 'alarms');
    await setAlarm('a7', Date.now() + 500);
    const c = await waitCalls('a7', 1, 60_000);
    expect(c).toHaveLength(1);
    // Alarms handled before the consumer was re-created are not delivered again.
    await sleep(2_000);
    expect((await calls('a1')).length).toBe(1);
    expect((await calls('a6')).length).toBe(1);
  }, 90_000);

  it('fires after the host that set it was killed -9', async () => {
    // Find the owner of the object: the one host whose sidecar serves its storage.
    const put = await s('a5', '/keys/x', { method: 'PUT', body: '1' });
    expect(put.status).toBe(200);
    await put.arrayBuffer();
    const statuses = await Promise.all(hosts.map((h) => fetch(`${h.url}/v1/storage/${CLS}/a5/keys/x`).then(async (r) => (await r.arrayBuffer(), r.status))));
    // The owner answers 410 TURN_NOT_RUNNING outside a turn; the others 409 NOT_OWNER.
    const owner = hosts[statuses.indexOf(410)]!;
    expect(owner).toBeDefined();
    await setAlarm('a5', Date.now() + 3_000);
    signal(owner, 'SIGKILL');
    signal(owner.app!, 'SIGKILL');
    hosts.splice(hosts.indexOf(owner), 1);
    const c = await waitCalls('a5', 1, 60_000);
    expect(c[0]!.pid).not.toBe(owner.app!.pid);
    await sleep(2_000);
    expect((await calls('a5')).length).toBe(1);
  }, 90_000);
});
