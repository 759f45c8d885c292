/**
 * Object storage API (SPEC §2.2) end to end: a test app on the owning host
 * proxies calls to its own sidecar (test/harness/apps/storage-app.ts), driven
 * through a client sidecar. Real 3-node NATS, R3 class stream.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startStorageHost } from '../harness/apps/storage-host.ts';
import { logDir, startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const CLS = 'store';
const env = { CASTELLAN_LEASE_TTL: '2s', CASTELLAN_REQUEST_TIMEOUT: '20s' };

interface ErrBody {
  error: { code: string; message: string; retryable: boolean };
}

describe('object storage API', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  let client: SidecarProc;

  beforeAll(async () => {
    nats = await startNats(3);
    hosts.push(await startStorageHost('sa-h0', CLS, nats.urls, env));
    hosts.push(await startStorageHost('sa-h1', CLS, nats.urls, env));
    client = await startClient('sa-c0', nats.urls, env);
    console.log(`sidecar logs in ${logDir}`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...hosts, client].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  /** A storage call made by the object's own app (through the object). */
  const s = (id: string, rest: string, init: RequestInit = {}) => fetch(`${client.url}/v1/objects/${CLS}/${encodeURIComponent(id)}/s${rest}`, init);
  const k = (key: string) => `/keys/${encodeURIComponent(key)}`;
  const json = async <T>(r: Response) => JSON.parse(await r.text()) as T;
  const put = async (id: string, key: string, value: string | Uint8Array, headers: Record<string, string> = {}) => {
    const r = await s(id, k(key), { method: 'PUT', body: value, headers });
    return { status: r.status, body: await json<{ version: number } & Partial<ErrBody>>(r) };
  };
  const expectError = async (r: Response, status: number, code: string) => {
    const text = await r.text();
    expect({ status: r.status, text }).toEqual({ status, text: expect.stringContaining(`"code":"${code}"`) });
    const b = JSON.parse(text) as ErrBody;
    expect(typeof b.error.message).toBe('string');
    expect(typeof b.error.retryable).toBe('boolean');
  };

  it('puts and gets binary values with versions', async () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    const p = await put('o1', 'bin', bytes);
    expect(p.status).toBe(200);
    expect(p.body.version).toBeGreaterThan(0);
    const g = await s('o1', k('bin'));
    expect(g.status).toBe(200);
    expect(g.headers.get('castellan-version')).toBe(String(p.body.version));
    expect(new Uint8Array(await g.arrayBuffer())).toEqual(bytes);
    const p2 = await put('o1', 'bin', 'second');
    expect(p2.body.version).toBeGreaterThan(p.body.version);
    expect(await (await s('o1', k('bin'))).text()).toBe('second');
    await expectError(await s('o1', k('missing')), 404, 'KEY_NOT_FOUND');
    // Empty value is a value.
    expect((await put('o1', 'empty', '')).status).toBe(200);
    const e = await s('o1', k('empty'));
    expect(e.status).toBe(200);
    expect((await e.arrayBuffer()).byteLength).toBe(0);
  }, 60_000);

  it('honours if-match and if-none-match', async () => {
    const a = await put('o2', 'c', '1', { 'if-none-match': '*' });
    expect(a.status).toBe(200);
    expect((await put('o2', 'c', 'x', { 'if-none-match': '*' })).body.error?.code).toBe('CONFLICT');
    expect((await put('o2', 'c', 'x', { 'if-match': String(a.body.version + 1000) })).status).toBe(409);
    const b = await put('o2', 'c', '2', { 'if-match': String(a.body.version) });
    expect(b.status).toBe(200);
    expect((await put('o2', 'c', '3', { 'if-match': String(a.body.version) })).status).toBe(409);
    expect(await (await s('o2', k('c'))).text()).toBe('2');
    expect((await put('o2', 'nope', 'x', { 'if-match': '1' })).status).toBe(409);
    expect((await put('o2', 'nope', 'x', { 'if-match': '*' })).status).toBe(409);
    expect((await put('o2', 'c', '2', { 'if-match': '*' })).status).toBe(200);
    const bad = await s('o2', k('c'), { method: 'PUT', body: 'x', headers: { 'if-match': 'abc' } });
    expect(bad.status).toBe(400);
  }, 60_000);

  it('deletes keys', async () => {
    await put('o3', 'd', 'v');
    expect(await json(await s('o3', k('d'), { method: 'DELETE' }))).toEqual({ deleted: true });
    expect(await json(await s('o3', k('d'), { method: 'DELETE' }))).toEqual({ deleted: false });
    await expectError(await s('o3', k('d')), 404, 'KEY_NOT_FOUND');
    // Re-created after delete: absent-check passes, version is new.
    expect((await put('o3', 'd', 'again', { 'if-none-match': '*' })).status).toBe(200);
  }, 60_000);

  it('lists in UTF-8 byte order with prefix, bounds, reverse, limit and truncated', async () => {
    const keys = ['p/1', 'p/10', 'p/2', 'q', 'a', 'z', '\uFF5E', '\u{1F600}', 'é'];
    for (const key of keys) expect((await put('o4', key, `v:${key}`)).status).toBe(200);
    type L = { entries: { key: string; value: string; version: number }[]; truncated: boolean };
    const list = async (q: string) => {
      const r = await s('o4', `/keys${q}`);
      expect(r.status).toBe(200);
      return json<L>(r);
    };
    const all = await list('');
    expect(all.entries.map((e) => e.key)).toEqual(['a', 'p/1', 'p/10', 'p/2', 'q', 'z', 'é', '\uFF5E', '\u{1F600}']);
    expect(all.truncated).toBe(false);
    expect(Buffer.from(all.entries[0]!.value, 'base64').toString()).toBe('v:a');
    expect(all.entries.every((e) => e.version > 0)).toBe(true);
    expect((await list('?prefix=p%2F')).entries.map((e) => e.key)).toEqual(['p/1', 'p/10', 'p/2']);
    expect((await list('?start=p%2F10&end=q')).entries.map((e) => e.key)).toEqual(['p/10', 'p/2']);
    expect((await list('?startAfter=p%2F10&end=z')).entries.map((e) => e.key)).toEqual(['p/2', 'q']);
    const rev = await list('?reverse=true&limit=2');
    expect(rev.entries.map((e) => e.key)).toEqual(['\u{1F600}', '\uFF5E']);
    expect(rev.truncated).toBe(true);
    const revP = await list('?prefix=p%2F&reverse=true&limit=3');
    expect(revP.entries.map((e) => e.key)).toEqual(['p/2', 'p/10', 'p/1']);
    expect(revP.truncated).toBe(false);
    const lim = await list('?limit=3');
    expect(lim.entries.map((e) => e.key)).toEqual(['a', 'p/1', 'p/10']);
    expect(lim.truncated).toBe(true);
    expect((await list('?prefix=nothing')).entries).toEqual([]);
    await expectError(await s('o4', '/keys?limit=0'), 400, 'BAD_REQUEST');
    await expectError(await s('o4', '/keys?bogus=1'), 400, 'BAD_REQUEST');
    await expectError(await s('o4', '/keys?reverse=maybe'), 400, 'BAD_REQUEST');
    // A unicode key read back by name.
    expect(await (await s('o4', k('\u{1F600}'))).text()).toBe('v:\u{1F600}');
  }, 90_000);

  it('runs transactions all-or-nothing with checks', async () => {
    const tx = (body: unknown) => s('o5', '/transaction', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    const first = await tx({ checks: [{ key: 'a', absent: true }], ops: [{ op: 'put', key: 'a', value: b64('1') }, { op: 'put', key: 'b', value: b64('2') }] });
    expect(first.status).toBe(200);
    const fb = await json<{ versions: Record<string, number> }>(first);
    expect(fb.versions.a).toBeGreaterThan(0);
    expect(fb.versions.b).toBe(fb.versions.a! + 1);
    // A failing check: nothing applied.
    await expectError(await tx({ checks: [{ key: 'a', version: fb.versions.a! + 99 }], ops: [{ op: 'put', key: 'a', value: b64('X') }, { op: 'delete', key: 'b' }] }), 409, 'CONFLICT');
    await expectError(await tx({ checks: [{ key: 'a', absent: true }], ops: [{ op: 'put', key: 'c', value: b64('X') }] }), 409, 'CONFLICT');
    expect(await (await s('o5', k('a'))).text()).toBe('1');
    expect(await (await s('o5', k('b'))).text()).toBe('2');
    await expectError(await s('o5', k('c')), 404, 'KEY_NOT_FOUND');
    // Passing checks: applied together.
    const ok = await tx({ checks: [{ key: 'a', version: fb.versions.a }, { key: 'c', absent: true }], ops: [{ op: 'put', key: 'a', value: b64('10') }, { op: 'delete', key: 'b' }, { op: 'put', key: 'c', value: b64('30') }] });
    expect(ok.status).toBe(200);
    expect(await (await s('o5', k('a'))).text()).toBe('10');
    await expectError(await s('o5', k('b')), 404, 'KEY_NOT_FOUND');
    expect(await (await s('o5', k('c'))).text()).toBe('30');
    // Limits and bad input.
    const many = Array.from({ length: 129 }, (_, i) => ({ op: 'put', key: `m${i}`, value: b64('x') }));
    const tooMany = await tx({ ops: many });
    expect(tooMany.status).toBe(400);
    expect(await tx({ ops: many.slice(0, 128) }).then((r) => r.status)).toBe(200);
    await expectError(await tx({ ops: [{ op: 'put', key: 'x', value: '***' }] }), 400, 'BAD_REQUEST');
    await expectError(await tx({ ops: [{ op: 'frobnicate', key: 'x' }] }), 400, 'BAD_REQUEST');
    await expectError(await s('o5', '/transaction', { method: 'POST', body: '{nope' }), 400, 'INVALID_JSON');
  }, 90_000);

  it('enforces key and value limits with 413', async () => {
    const v1m = new Uint8Array(1024 * 1024).fill(7);
    const big = await put('o6', 'big', v1m);
    expect(big.status).toBe(200);
    const g = await s('o6', k('big'));
    // Buffer.equals: jest's toEqual on a 1 MiB array takes many seconds.
    expect(Buffer.from(await g.arrayBuffer()).equals(Buffer.from(v1m))).toBe(true);
    await expectError(await s('o6', k('big'), { method: 'PUT', body: new Uint8Array(1024 * 1024 + 1) }), 413, 'PAYLOAD_TOO_LARGE');
    expect((await put('o6', 'k'.repeat(2048), 'ok')).status).toBe(200);
    await expectError(await s('o6', k('k'.repeat(2049)), { method: 'PUT', body: 'x' }), 413, 'PAYLOAD_TOO_LARGE');
    await expectError(await s('o6', k('é'.repeat(1025))), 413, 'PAYLOAD_TOO_LARGE');
    const tx = await s('o6', '/transaction', { method: 'POST', body: JSON.stringify({ ops: [{ op: 'put', key: 'k'.repeat(2049), value: '' }] }) });
    await expectError(tx, 413, 'PAYLOAD_TOO_LARGE');
  }, 60_000);

  it('deletes all keys of an object but keeps its alarm', async () => {
    for (const key of ['x1', 'x2', 'x3']) await put('o7', key, key);
    const at = Date.now() + 3_600_000;
    expect((await s('o7', '/alarm', { method: 'PUT', body: JSON.stringify({ at }) })).status).toBe(200);
    const d = await s('o7', '', { method: 'DELETE' });
    expect(d.status).toBe(200);
    expect(await json(d)).toEqual({ deleted: 3 });
    expect((await json<{ entries: unknown[] }>(await s('o7', '/keys'))).entries).toEqual([]);
    expect(await json(await s('o7', '/alarm'))).toEqual({ at });
  }, 60_000);

  it('sets, reads and deletes the alarm; rejects bad times', async () => {
    await expectError(await s('o8', '/alarm'), 404, 'ALARM_NOT_FOUND');
    const iso = new Date(Date.now() + 3_600_000).toISOString();
    expect((await s('o8', '/alarm', { method: 'PUT', body: JSON.stringify({ at: iso }) })).status).toBe(200);
    expect(await json(await s('o8', '/alarm'))).toEqual({ at: iso });
    const later = Date.now() + 7_200_000;
    expect((await s('o8', '/alarm', { method: 'PUT', body: JSON.stringify({ at: later }) })).status).toBe(200);
    expect(await json(await s('o8', '/alarm'))).toEqual({ at: later });
    expect(await json(await s('o8', '/alarm', { method: 'DELETE' }))).toEqual({ deleted: true });
    await expectError(await s('o8', '/alarm'), 404, 'ALARM_NOT_FOUND');
    expect(await json(await s('o8', '/alarm', { method: 'DELETE' }))).toEqual({ deleted: false });
    await expectError(await s('o8', '/alarm', { method: 'PUT', body: JSON.stringify({ at: 'tomorrow' }) }), 400, 'BAD_REQUEST');
    await expectError(await s('o8', '/alarm', { method: 'PUT', body: JSON.stringify({}) }), 400, 'BAD_REQUEST');
  }, 60_000);

  it('answers 409 NOT_OWNER anywhere but the owning sidecar, and 410 there outside a turn', async () => {
    await put('o9', 'a', 'v');
    const direct = (sc: SidecarProc, rest: string, init: RequestInit = {}) => fetch(`${sc.url}/v1/storage/${CLS}/o9${rest}`, init);
    await expectError(await direct(client, '/keys/a'), 409, 'NOT_OWNER');
    // The owner is one of the hosts; the other one is not. Outside a turn of the object, even the owner refuses (410).
    const results = await Promise.all(hosts.map((h) => direct(h, '/keys/a').then(async (r) => ({ status: r.status, text: await r.text() }))));
    const owner = results.filter((r) => r.status === 410);
    const others = results.filter((r) => r.status === 409);
    expect(owner.length).toBe(1);
    expect(owner[0]!.text).toContain('TURN_NOT_RUNNING');
    expect(others.length).toBe(1);
    expect(others[0]!.text).toContain('NOT_OWNER');
    for (const h of hosts) {
      const r = await direct(h, '/keys/a', { method: 'PUT', body: 'w' });
      if (h.url === hosts[results.indexOf(owner[0]!)]!.url) await expectError(r, 410, 'TURN_NOT_RUNNING');
      else await expectError(r, 409, 'NOT_OWNER');
    }
    // Nothing was written from outside the turn.
    expect(await (await s('o9', k('a'))).text()).toBe('v');
    await expectError(await fetch(`${client.url}/v1/storage/othercls/o9/keys/a`), 409, 'NOT_OWNER');
    await expectError(await fetch(`${client.url}/v1/storage/${CLS}/${encodeURIComponent('x'.repeat(300))}/keys/a`), 400, 'INVALID_ID');
    await expectError(await fetch(`${client.url}/v1/storage/${CLS}/o9/bogus`), 404, 'ROUTE_NOT_FOUND');
    await expectError(await fetch(`${client.url}/v1/storage/${CLS}/o9/keys`, { method: 'POST' }), 405, 'METHOD_NOT_ALLOWED');
  }, 60_000);

  it('keeps data across deactivation and reactivation on another host', async () => {
    await put('o10', 'keep', 'me');
    const who = await Promise.all(hosts.map((h) => fetch(`${h.url}/v1/storage/${CLS}/o10/keys/keep`).then(async (r) => (await r.arrayBuffer(), r.status))));
    // The owner answers 410 TURN_NOT_RUNNING outside a turn; the others 409 NOT_OWNER.
    const ownerIdx = who.indexOf(410);
    expect(ownerIdx).toBeGreaterThanOrEqual(0);
    const owner = hosts[ownerIdx]!;
    await stopProc(owner, 'SIGTERM');
    hosts.splice(ownerIdx, 1);
    hosts.push(await startStorageHost(`sa-h${hosts.length + 5}`, CLS, nats.urls, env));
    const g = await s('o10', k('keep'));
    expect(g.status).toBe(200);
    expect(await g.text()).toBe('me');
    expect((await put('o10', 'keep', 'more')).status).toBe(200);
  }, 90_000);
});
