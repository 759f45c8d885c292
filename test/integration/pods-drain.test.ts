/**
 * The preStop drain a real pod relies on (issue 14), with the sidecars as
 * processes: the admin listener answers the kubelet's probes and scrapes, and
 * `GET /drain` (the app container's preStop hook) hands the host's objects over
 * and answers only then, so killing the app right after it (what the kubelet
 * does next) and then the sidecar fails no call. The replacement pod (same
 * pod name, its sidecar up before its app, as a native sidecar starts) takes
 * placements only once its app answers, so calls to new objects fail none
 * meanwhile. Real 3-node NATS.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, sleep, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { signal, startApp, startClient, startHost, startSidecar, stopProc, waitHttp, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '5s' };

describe('sidecar admin listener and preStop drain', () => {
  let nats: TestNats;
  const hosts: { sc: SidecarProc; admin: string }[] = [];
  let client: SidecarProc;

  const newHost = async (name: string) => {
    const port = await freePort();
    const sc = await startHost(name, 'counter', nats.urls, { ...env, CASTELLAN_ADMIN_PORT: String(port), CASTELLAN_ADMIN_HOST: '127.0.0.1' });
    hosts.push({ sc, admin: `http://127.0.0.1:${port}` });
  };

  beforeAll(async () => {
    nats = await startNats(3);
    await newHost('d-h0');
    await newHost('d-h1');
    await newHost('d-h2');
    client = await startClient('d-c0', nats.urls, env);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...hosts.map((h) => stopProc(h.sc, 'SIGKILL')), stopProc(client, 'SIGKILL')]);
    await nats?.dispose();
  }, 30_000);

  it('answers health, readiness and metrics on the admin port', async () => {
    const h = hosts[0]!;
    expect((await fetch(`${h.admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${h.admin}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${h.admin}/metrics`)).text()).toContain('castellan_object_active');
    expect((await fetch(`${h.admin}/v1/objects/counter/x/increment`, { method: 'POST' })).status).toBe(404);
  });

  it('drains the owner on GET /drain, then the app and the sidecar stop, and no call fails', async () => {
    const ids = ['d-a', 'd-b', 'd-c', 'd-d'];
    const pidOf = new Map<string, number>();
    const failures: string[] = [];
    let total = 0;
    let stop = false;
    const worker = async (id: string) => {
      let last = 0;
      let activation = '';
      while (!stop) {
        const res = await fetch(`${client.url}/v1/objects/counter/${id}/increment`, { method: 'POST' });
        const text = await res.text();
        total++;
        if (res.status !== 200) {
          failures.push(`${id}: ${res.status} ${text.slice(0, 200)}`);
          continue;
        }
        // the test app counts per activation (in memory): a new owner starts again at 1
        const v = JSON.parse(text) as { value: number; pid: number; activation: number };
        const key = `${v.pid}/${v.activation}`;
        if (key !== activation) last = 0;
        activation = key;
        if (v.value !== last + 1) failures.push(`${id}: expected ${last + 1}, got ${v.value}`);
        last = v.value;
        pidOf.set(id, v.pid);
      }
    };
    const workers = ids.map(worker);
    while (pidOf.size < ids.length) await sleep(50);
    const owner = hosts.find((h) => h.sc.app?.pid === pidOf.get('d-a'))!;
    const t0 = Date.now();
    const drained = await fetch(`${owner.admin}/drain`);
    expect(drained.status).toBe(200);
    expect(await drained.json()).toMatchObject({ drained: true });
    const drainMs = Date.now() - t0;
    expect((await fetch(`${owner.admin}/readyz`)).status).toBe(503);
    // what the kubelet does after the preStop hook: SIGTERM the app, then (native sidecar) the sidecar
    signal(owner.sc.app!, 'SIGTERM');
    await stopProc(owner.sc, 'SIGTERM');
    await sleep(3_000);
    stop = true;
    await Promise.all(workers);
    console.log(`preStop drain took ${drainMs} ms; ${total} calls, ${failures.length} failed`);
    expect(failures).toEqual([]);
    expect(pidOf.get('d-a')).not.toBe(owner.sc.app!.pid);
    replaced = owner.sc.name;
  }, 120_000);

  let replaced = '';
  it('the replacement pod (same name, sidecar before app) takes placements only once its app answers; no call fails', async () => {
    expect(replaced).not.toBe('');
    const appPort = await freePort();
    const adminPort = await freePort();
    // The sidecar starts first, its app only seconds later (a native sidecar's startup probe passes before the app container starts).
    const sc = await startSidecar(replaced, nats.urls, { ...env, CASTELLAN_ROLE: 'object-host', CASTELLAN_CLASS: 'counter', CASTELLAN_APP_PORT: String(appPort), CASTELLAN_ADMIN_PORT: String(adminPort), CASTELLAN_ADMIN_HOST: '127.0.0.1' }, { wait: false });
    hosts.push({ sc, admin: `http://127.0.0.1:${adminPort}` });
    const failures: string[] = [];
    const servedBy = new Set<number>();
    let total = 0;
    let stop = false;
    // Fresh object ids on every call: each is placed by rendezvous over the placeable hosts, the new one included once it is.
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const res = await fetch(`${client.url}/v1/objects/counter/r-${w}-${i}/increment`, { method: 'POST' });
        const text = await res.text();
        total++;
        if (res.status !== 200) failures.push(`r-${w}-${i}: ${res.status} ${text.slice(0, 200)}`);
        else servedBy.add((JSON.parse(text) as { pid: number }).pid);
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    await waitHttp(`http://127.0.0.1:${adminPort}/healthz`);
    await sleep(3_000);
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(503);
    sc.app = await startApp(`${replaced}-app2`, appPort);
    await waitHttp(`http://127.0.0.1:${adminPort}/readyz`);
    const app = sc.app;
    await waitFor('the new host serving objects', async () => (servedBy.has(app.pid) ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
    stop = true;
    await Promise.all(workers);
    console.log(`replacement pod: ${total} calls, ${failures.length} failed`);
    expect(failures).toEqual([]);
  }, 120_000);
});
