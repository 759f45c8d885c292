/**
 * Durable objects, routing and errors (SPEC §2.1): real 3-node NATS, object
 * hosts (sidecar + counter test app) and client sidecars as processes.
 * Forwarding preserves method, path, query, status, headers and binary bodies;
 * every §2.1 error code is produced; Serial turns never overlap.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { startNats, type TestNats } from '../harness/nats.ts';
import { logDir, startClient, startHost, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '1500ms', CASTELLAN_UNAVAILABLE_WAIT: '1s' };

describe('durable objects: routing and errors', () => {
  let nats: TestNats;
  const procs: SidecarProc[] = [];
  let c0: SidecarProc;
  let c1: SidecarProc;
  let tiny: SidecarProc;

  beforeAll(async () => {
    nats = await startNats(3);
    const started = await Promise.all([
      startHost('r-h0', 'counter', nats.urls, { ...env, CASTELLAN_IDLE_TIMEOUT: '1500ms' }),
      startHost('r-h1', 'counter', nats.urls, { ...env, CASTELLAN_IDLE_TIMEOUT: '1500ms' }),
      startHost('r-tiny', 'tiny', nats.urls, { ...env, CASTELLAN_MAX_QUEUE: '1' }),
      startHost('r-gone', 'gone', nats.urls, env),
      startClient('r-c0', nats.urls, env),
      startClient('r-c1', nats.urls, env),
    ]);
    procs.push(...started);
    [, , tiny, , c0, c1] = started as [SidecarProc, SidecarProc, SidecarProc, SidecarProc, SidecarProc, SidecarProc];
    // The only host of class "gone" leaves: the class exists but has no host.
    await stopProc(started[3]);
    console.log(`sidecar logs in ${logDir}`);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const call = (sc: SidecarProc, cls: string, idPath: string, init: RequestInit = {}) => fetch(`${sc.url}/v1/objects/${cls}/${idPath}`, init);

  it('forwards method, path, query, headers and a binary body, and returns the app’s answer unchanged', async () => {
    const id = 'a.b*c> d 🦀';
    const body = randomBytes(4096);
    const res = await call(c0, 'counter', `${encodeURIComponent(id)}/echo/x%20y/z?a=1&b=%2F&b=2`, {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/octet-stream', 'x-custom': 'v1', connection: 'keep-alive' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-echo')).toBe('one');
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    const echo = (await res.json()) as { method: string; url: string; id: string; cls: string; rid: string; headers: Record<string, string>; body: string };
    expect(echo.method).toBe('PUT');
    expect(echo.url).toBe('/echo/x%20y/z?a=1&b=%2F&b=2');
    expect(echo.id).toBe(id);
    expect(echo.cls).toBe('counter');
    expect(echo.rid).toMatch(/^[0-9a-f-]{36}$/);
    expect(echo.headers['x-custom']).toBe('v1');
    expect(echo.headers['content-type']).toBe('application/octet-stream');
    expect(Buffer.from(echo.body, 'base64').equals(body)).toBe(true);

    const st = await call(c1, 'counter', 'plain/status/418', { method: 'DELETE' });
    expect(st.status).toBe(418);
    expect(st.headers.get('x-test')).toBe('yes');
    expect(await st.text()).toBe('status body');
  });

  it('serves the same object from any caller, on one host, with increasing values', async () => {
    const values: number[] = [];
    const pids = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const res = await call(i % 2 === 0 ? c0 : c1, 'counter', 'same/increment', { method: 'POST' });
      const v = (await res.json()) as { value: number; pid: number };
      values.push(v.value);
      pids.add(v.pid);
    }
    expect(values).toEqual([1, 2, 3, 4, 5, 6]);
    expect(pids.size).toBe(1);
  });

  it('handles 1 MiB bodies both ways and rejects bodies beyond the NATS max payload with 413', async () => {
    // The test NATS runs with max_payload 8 MiB (local/nats-cluster.ts); objects accept
    // that minus the envelope headroom.
    const big = randomBytes(1024 * 1024);
    const up = await call(c0, 'counter', 'big/increment', { method: 'POST', body: big });
    expect(up.status).toBe(200);
    const down = await call(c0, 'counter', 'big/big?bytes=1048576', { method: 'POST' });
    expect(down.status).toBe(200);
    expect((await down.arrayBuffer()).byteLength).toBe(1048576);
    const tooBig = await call(c0, 'counter', 'big/increment', { method: 'POST', body: randomBytes(8 * 1024 * 1024 + 1) });
    expect(tooBig.status).toBe(413);
    expect(await tooBig.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE', retryable: false } });
  });

  it('answers 400 INVALID_ID for empty, too long and badly encoded ids', async () => {
    for (const idPath of [`${'x'.repeat(257)}/a`, '%FF', '%E0%A4%A', '']) {
      const res = await call(c0, 'counter', idPath);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'INVALID_ID', retryable: false } });
    }
    expect((await call(c0, 'counter', encodeURIComponent('é'.repeat(256)))).status).toBe(200);
  });

  it('answers 404 CLASS_NOT_FOUND for an unknown class', async () => {
    const res = await call(c0, 'no-such-class', 'x');
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'CLASS_NOT_FOUND', retryable: false } });
  });

  it('answers 503 OBJECT_UNAVAILABLE (retryable) when the class has no live host', async () => {
    const t = performance.now();
    const res = await call(c0, 'gone', 'x');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'OBJECT_UNAVAILABLE', retryable: true } });
    expect(performance.now() - t).toBeLessThan(5_000);
  });

  it('answers 504 OBJECT_TIMEOUT when the object does not answer in time', async () => {
    const res = await call(c0, 'counter', 'slow/sleep?ms=3000', { method: 'POST' });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { code: 'OBJECT_TIMEOUT' } });
  });

  it('answers 429 OBJECT_OVERLOADED when an object’s queue is full', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () => call(c0, 'tiny', 'hot/sleep?ms=400', { method: 'POST' }).then(async (r) => ({ status: r.status, body: await r.text() }))),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    const rejected = results.filter((r) => r.status === 429);
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(rejected[0]!.body)).toMatchObject({ error: { code: 'OBJECT_OVERLOADED', retryable: true } });
    expect(tiny.app).toBeDefined();
  });

  it('never runs two requests of one Serial object at once on the app', async () => {
    const ids = ['s1', 's2', 's3'];
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => call(i % 2 === 0 ? c0 : c1, 'counter', `${ids[i % 3]}/increment?delay=5`, { method: 'POST' }).then((r) => expect(r.status).toBe(200))),
    );
    for (const p of procs.filter((x) => x.app !== undefined && x.name.startsWith('r-h'))) {
      const stats = (await (await fetch(`${p.app!.url}/stats`)).json()) as { maxConcurrent: Record<string, number> };
      for (const id of ids) expect(stats.maxConcurrent[id] ?? 0).toBeLessThanOrEqual(1);
    }
  });

  it('runs a request id at most once: a repeated castellan-request-id returns the first answer', async () => {
    const headers = { 'castellan-request-id': 'fixed-request-id-1' };
    const a = (await (await call(c0, 'counter', 'dedupe/increment', { method: 'POST', headers })).json()) as { value: number };
    const b = (await (await call(c1, 'counter', 'dedupe/increment', { method: 'POST', headers })).json()) as { value: number };
    expect(b.value).toBe(a.value);
    const c = (await (await call(c0, 'counter', 'dedupe/increment', { method: 'POST' })).json()) as { value: number };
    expect(c.value).toBe(a.value + 1);
  });

  it('serves a call through the owner’s own sidecar in process, with the same request ids, turns and deadlines as over NATS', async () => {
    const first = (await (await call(c0, 'counter', 'local-1/increment', { method: 'POST' })).json()) as { value: number; pid: number };
    const owner = procs.find((p) => p.app?.pid === first.pid && p.name.startsWith('r-h'));
    expect(owner).toBeDefined();
    const forwards = async (sc: SidecarProc, kind: string) => {
      const text = await (await fetch(`${sc.url}/metrics`)).text();
      const m = new RegExp(`castellan_object_forwards_total\\{[^}]*class="counter"[^}]*kind="${kind}"[^}]*\\} (\\d+)`).exec(text);
      return Number(m?.[1] ?? 0);
    };
    const localBefore = await forwards(owner!, 'local');
    const natsBefore = await forwards(owner!, 'first');
    const headers = { 'castellan-request-id': 'local-request-id-1' };
    const a = (await (await call(owner!, 'counter', 'local-1/increment', { method: 'POST', headers })).json()) as { value: number; pid: number };
    expect(a).toMatchObject({ value: 2, pid: first.pid });
    // The same request id through another sidecar (over NATS) returns the first answer: one de-duplication for both paths.
    const again = (await (await call(c1, 'counter', 'local-1/increment', { method: 'POST', headers })).json()) as { value: number };
    expect(again.value).toBe(2);
    // Turns of one Serial object never overlap, whether they come in process or over NATS.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(i % 2 === 0 ? owner! : c0, 'counter', 'local-1/increment?delay=5', { method: 'POST' }).then((r) => expect(r.status).toBe(200))),
    );
    const stats = (await (await fetch(`${owner!.app!.url}/stats`)).json()) as { maxConcurrent: Record<string, number> };
    expect(stats.maxConcurrent['local-1']).toBe(1);
    expect(await forwards(owner!, 'local')).toBeGreaterThanOrEqual(localBefore + 11);
    expect(await forwards(owner!, 'first')).toBe(natsBefore);
    // The caller's deadline holds in process too.
    const slow = await call(owner!, 'counter', 'local-1/sleep?ms=3000', { method: 'POST' });
    expect(slow.status).toBe(504);
    expect(await slow.json()).toMatchObject({ error: { code: 'OBJECT_TIMEOUT' } });
  });

  it('deactivates an idle object (releasing it) and reactivates it on demand', async () => {
    const inc = async () => (await (await call(c0, 'counter', 'idle/increment', { method: 'POST' })).json()) as { value: number; activation: number };
    const a = await inc();
    const b = await inc();
    expect(b.activation).toBe(a.activation);
    await new Promise((r) => setTimeout(r, 2_600));
    const c = await inc();
    expect(c.activation).toBeGreaterThan(a.activation);
    expect(c.value).toBe(1);
  });

  it('exposes object metrics and an app-aware /readyz', async () => {
    const text = await (await fetch(`${c0.url}/metrics`)).text();
    expect(text).toMatch(/castellan_object_requests_total\{[^}]*class="counter"[^}]*outcome="2xx"/);
    expect(text).toMatch(/castellan_object_request_duration_seconds_bucket/);
    const host = procs[0]!;
    const hostMetrics = await (await fetch(`${host.url}/metrics`)).text();
    expect(hostMetrics).toMatch(/castellan_object_active\{/);
    const ready = (await (await fetch(`${host.url}/readyz`)).json()) as { checks: Record<string, string> };
    expect(ready.checks.app).toBe('ok');
  });
});
