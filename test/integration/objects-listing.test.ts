/**
 * Object listing (SPEC §2.6) against a real 3-node NATS cluster (R3 class
 * stream), three object hosts running the storage test app, and client
 * sidecars as processes: thousands of objects written by PUTs, transactions
 * and alarms, with ids that are awkward for NATS subjects and for UTF-16
 * order; listings complete, in UTF-8 byte order, paged without skips or
 * repeats, with exact summaries; objects idle-released and re-activated;
 * deletions (the API's through the owner, and storage emptied key by key);
 * an owner killed -9 in the middle of writes (its objects' entries pending,
 * their totals riding on the puts); bad cursors and limits.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sleep, waitFor } from '../../common/net.ts';
import { logger } from '../../common/logger.ts';
import { objectClassStats } from '../../operator/assets/object-stats.ts';
import { jetstreamManager } from '@nats-io/jetstream';
import { decodeSummary, indexNames, OP_HEADER } from '../../sidecar/listing/layout.ts';
import { classNames, encodeId } from '../../sidecar/objects/subjects.ts';
import { compareKeys } from '../../sidecar/storage/keys.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startStorageHost } from '../harness/apps/storage-host.ts';
import { logDir, signal, startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const CLS = 'listed';
const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '10s', CASTELLAN_UNAVAILABLE_WAIT: '8s', CASTELLAN_IDLE_TIMEOUT: '4s' };

interface Listed {
  id: string;
  keys: number;
  bytes: number;
  alarm: number | null;
  host: string | null;
  lastWrite: string | null;
}
type Page = { objects: Listed[]; next: string | null };

const awkward = ['a.b', 'a*', 'a>', 'a b', ' lead', 'é', 'ÿ', '\uFF5E', '\u{1F600}', 'a', 'ab', 'Z', '-', '_', '0', '~', '中文', 'a/b', '%41', 'x.*.>'];

describe('object listing', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  const clients: SidecarProc[] = [];
  /** What the test wrote: id → key → value size. */
  const expected = new Map<string, Map<string, number>>();
  const alarms = new Map<string, number>();

  beforeAll(async () => {
    nats = await startNats(3);
    for (let i = 0; i < 3; i++) hosts.push(await startStorageHost(`ol-h${i}`, CLS, nats.urls, env));
    clients.push(await startClient('ol-c0', nats.urls, env));
    console.log(`sidecar logs in ${logDir}`);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([...hosts, ...clients].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const c = () => clients[0]!;
  const call = async (id: string, rest: string, init: RequestInit = {}): Promise<{ status: number; text: string }> => {
    const r = await fetch(`${c().url}/v1/objects/${CLS}/${encodeURIComponent(id)}/s${rest}`, { ...init, signal: AbortSignal.timeout(30_000) });
    return { status: r.status, text: await r.text() };
  };
  /** Retries what certainly did not run or may be repeated (every write here is idempotent: fixed values). */
  const ok = async (what: string, p: () => Promise<{ status: number; text: string }>, tries = 6) => {
    for (let i = 1; ; i++) {
      const r = await p();
      if (r.status >= 200 && r.status <= 299) return r;
      const retryable = r.status === 503 || r.status === 504 || r.text.includes('"NOT_OWNER"');
      if (!retryable || i >= tries) throw new Error(`${what}: ${r.status} ${r.text}`);
      await sleep(200 * i);
    }
  };
  const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');
  const put = (id: string, key: string, size: number) => {
    const m = expected.get(id) ?? new Map<string, number>();
    expected.set(id, m);
    return ok(`put ${id}`, () => call(id, `/keys/${encodeURIComponent(key)}`, { method: 'PUT', body: Buffer.alloc(size, 1) })).then(() => m.set(key, size));
  };
  const tx = async (id: string, ops: { op: 'put' | 'delete'; key: string; size?: number }[], tries = 6) => {
    await ok(
      `transaction ${id}`,
      () => call(id, '/transaction', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ops: ops.map((o) => (o.op === 'put' ? { op: 'put', key: o.key, value: b64(o.size ?? 0) } : { op: 'delete', key: o.key })) }),
      }),
      tries,
    );
    const m = expected.get(id) ?? new Map<string, number>();
    expected.set(id, m);
    for (const o of ops) {
      if (o.op === 'put') m.set(o.key, o.size ?? 0);
      else m.delete(o.key);
    }
  };
  const setAlarm = async (id: string, at: number) => {
    await ok(`alarm ${id}`, () => call(id, '/alarm', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ at }) }));
    alarms.set(id, at);
  };
  const api = async (path: string, init: RequestInit = {}, via = c()): Promise<{ status: number; body: unknown }> => {
    const r = await fetch(`${via.url}/v1/classes/${CLS}/objects${path}`, { ...init, signal: AbortSignal.timeout(60_000) });
    const text = await r.text();
    return { status: r.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  };
  const listAll = async (opts: { prefix?: string; limit?: number; via?: SidecarProc } = {}): Promise<Listed[]> => {
    const out: Listed[] = [];
    const seen = new Set<string>();
    let after: string | null = null;
    for (let pages = 0; ; pages++) {
      const q = new URLSearchParams();
      if (opts.prefix !== undefined) q.set('prefix', opts.prefix);
      if (opts.limit !== undefined) q.set('limit', String(opts.limit));
      if (after !== null) q.set('after', after);
      const r = await api(`?${q.toString()}`, {}, opts.via);
      if (r.status !== 200) throw new Error(`list page ${pages}: ${r.status} ${JSON.stringify(r.body)}`);
      const page = r.body as Page;
      expect(page.objects.length).toBeLessThanOrEqual(opts.limit ?? 100);
      for (const o of page.objects) {
        if (seen.has(o.id)) throw new Error(`object ${JSON.stringify(o.id)} listed twice`);
        seen.add(o.id);
        out.push(o);
      }
      if (page.next === null) return out;
      after = page.next;
    }
  };
  /** Ids that have storage or an alarm, in UTF-8 byte order. */
  const expectedIds = (prefix = '') =>
    [...new Set([...[...expected].filter(([, m]) => m.size > 0).map(([id]) => id), ...alarms.keys()])].filter((id) => id.startsWith(prefix)).sort(compareKeys);
  const bytesOf = (m: Map<string, number> | undefined) => [...(m ?? new Map<string, number>())].reduce((n, [k, v]) => n + Buffer.byteLength(k, 'utf8') + v, 0);
  const checkSummaries = (listed: Listed[]) => {
    for (const o of listed) {
      const m = expected.get(o.id);
      expect({ id: o.id, keys: o.keys, bytes: o.bytes, alarm: o.alarm }).toEqual({ id: o.id, keys: m?.size ?? 0, bytes: bytesOf(m), alarm: alarms.get(o.id) ?? null });
      expect(typeof o.lastWrite).toBe('string');
    }
  };
  const pool = async <T>(items: readonly T[], n: number, fn: (t: T, i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (next < items.length) {
          const i = next++;
          await fn(items[i]!, i);
        }
      }),
    );
  };

  it('lists thousands of objects in byte order, paged without skips or repeats, with exact summaries', async () => {
    const ids = [...awkward, ...Array.from({ length: 2_000 }, (_, i) => (i % 3 === 0 ? `user.${i}` : i % 3 === 1 ? `order-${String(i).padStart(5, '0')}` : `é-${i}*`))];
    const future = Date.now() + 3_600_000;
    await pool(ids, 24, async (id, i) => {
      if (i % 5 === 0) await tx(id, [{ op: 'put', key: 'a', size: 3 }, { op: 'put', key: 'b.é', size: i % 11 }, { op: 'put', key: 'c/d', size: 1 }]);
      else await put(id, 'v', (i % 7) + 1);
      if (i % 50 === 1) await setAlarm(id, future + i);
    });
    // Objects with only an alarm are listed too.
    await pool(['alarm only 1', 'alarm.only.2'], 2, (id) => setAlarm(id, future));

    const all = await listAll({ limit: 97 });
    expect(all.map((o) => o.id)).toEqual(expectedIds());
    checkSummaries(all);
    const hostNames = new Set(hosts.map((h) => h.name));
    expect(all.filter((o) => o.host !== null).every((o) => hostNames.has(o.host!))).toBe(true);
    expect(all.some((o) => o.host !== null)).toBe(true);

    // Any page size gives the same list; a prefix selects exactly the ids that start with it.
    expect((await listAll({ limit: 1000 })).map((o) => o.id)).toEqual(expectedIds());
    expect((await listAll({ prefix: 'user.1', limit: 13 })).map((o) => o.id)).toEqual(expectedIds('user.1'));
    expect((await listAll({ prefix: 'a' })).map((o) => o.id)).toEqual(expectedIds('a'));
    expect(await listAll({ prefix: 'nothing-here' })).toEqual([]);
    const first = (await api('?limit=5')).body as Page;
    expect(first.objects.map((o) => o.id)).toEqual(expectedIds().slice(0, 5));
    expect(first.next).not.toBeNull();
  }, 600_000);

  it('answers one object, 404 for an unknown one or class, and 400 for bad cursors and limits', async () => {
    const id = 'a.b';
    const one = await api(`/${encodeURIComponent(id)}`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id, keys: expected.get(id)!.size, bytes: bytesOf(expected.get(id)) });
    expect((await api(`/${encodeURIComponent('never written')}`)).body).toMatchObject({ error: { code: 'OBJECT_NOT_FOUND' } });
    const r = await fetch(`${c().url}/v1/classes/no-such-class/objects`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('CLASS_NOT_FOUND');
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'limit=-5', 'after=%21%21', 'after=YQ%3D%3D', 'after=____']) {
      const b = await api(`?${q}`);
      expect([q, b.status]).toEqual([q, 400]);
      expect((b.body as { error: { code: string } }).error.code).toMatch(/^INVALID_(LIMIT|CURSOR)$/);
    }
  }, 60_000);

  it('keeps the list right across idle release and re-activation, and on a fresh sidecar', async () => {
    // Every object goes idle (4 s) and is released: listed with no host, same summaries.
    const idle = await waitFor('every object released', async () => {
      const all = await listAll({ limit: 1000 });
      return all.every((o) => o.host === null) ? all : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1_000 });
    expect(idle.map((o) => o.id)).toEqual(expectedIds());
    // Re-activated by a write elsewhere: the write shows in the listing at once (read-your-writes).
    await put('user.3', 'more', 10);
    const after = (await api(`/${encodeURIComponent('user.3')}`)).body as Listed;
    expect(after).toMatchObject({ keys: expected.get('user.3')!.size, bytes: bytesOf(expected.get('user.3')) });
    expect(after.host).not.toBeNull();
    await put('brand new', 'k', 1);
    const listed = (await api(`?prefix=${encodeURIComponent('brand new')}`)).body as Page;
    expect(listed.objects.map((o) => o.id)).toEqual(['brand new']);
    // A sidecar that never listed the class builds its view and lists the same.
    clients.push(await startClient('ol-c1', nats.urls, env));
    const fresh = await listAll({ limit: 500, via: clients[1]! });
    expect(fresh.map((o) => o.id)).toEqual(expectedIds());
    checkSummaries(fresh);
  }, 180_000);

  it('deletes objects through their owner and drops emptied ones', async () => {
    const victims = expectedIds('order-').slice(0, 30);
    const withAlarm = [...alarms.keys()].filter((id) => id.startsWith('order-')).slice(0, 2);
    for (const id of [...victims, ...withAlarm]) {
      const r = await api(`/${encodeURIComponent(id)}`, { method: 'DELETE' });
      expect([id, r.status]).toEqual([id, 204]);
      expected.delete(id);
      alarms.delete(id);
      expect((await api(`/${encodeURIComponent(id)}`)).status).toBe(404);
      const keys = await api(`/${encodeURIComponent(id)}/keys`);
      expect(keys.body).toEqual({ entries: [], next: null });
    }
    // Storage emptied by the app, key by key or all at once: no longer an object.
    const emptied = expectedIds('user.').filter((id) => !alarms.has(id)).slice(0, 10);
    for (const id of emptied) {
      await ok(`delete-all ${id}`, () => call(id, '', { method: 'DELETE' }));
      expected.delete(id);
    }
    await ok('alarm delete', () => call('alarm only 1', '/alarm', { method: 'DELETE' }));
    alarms.delete('alarm only 1');
    const all = await listAll({ limit: 250 });
    expect(all.map((o) => o.id)).toEqual(expectedIds());
    checkSummaries(all);
    // Deleting an object that has nothing is fine.
    expect((await api(`/${encodeURIComponent('never existed')}`, { method: 'DELETE' })).status).toBe(204);
  }, 240_000);

  it('inspects an object\'s keys and values, read-only, by prefix and page', async () => {
    const id = 'insp ect.*';
    await tx(id, Array.from({ length: 25 }, (_, i) => ({ op: 'put' as const, key: `k/${String(i).padStart(2, '0')}`, size: i })));
    await put(id, 'other', 4);
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const q = new URLSearchParams({ prefix: 'k/', limit: '10', ...(after === null ? {} : { after }) });
      const r = await api(`/${encodeURIComponent(id)}/keys?${q.toString()}`);
      expect(r.status).toBe(200);
      const page = r.body as { entries: { key: string; value: string; version: number }[]; next: string | null };
      for (const e of page.entries) {
        seen.push(e.key);
        expect(Buffer.from(e.value, 'base64').length).toBe(expected.get(id)!.get(e.key));
        expect(e.version).toBeGreaterThan(0);
      }
      if (page.next === null) break;
      after = page.next;
    }
    expect(seen).toEqual([...expected.get(id)!.keys()].filter((k) => k.startsWith('k/')).sort(compareKeys));
  }, 60_000);

  it('keeps the index equal to storage when the owner is killed -9 in the middle of writes', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `kill.${i}`);
    const unsure = new Set<string>();
    let stop = false;
    const writer = async (id: string, w: number) => {
      for (let n = 0; !stop; n++) {
        const key = `k${(n * 7 + w) % 13}`;
        const ops = n % 4 === 3 ? [{ op: 'delete' as const, key }] : [{ op: 'put' as const, key, size: (n % 9) * 10 }, { op: 'put' as const, key: `${key}.x`, size: 1 }];
        try {
          await tx(id, ops, 1);
        } catch {
          // Unanswered during the failover: it may or may not have been applied; the check reads storage itself.
          unsure.add(id);
          await sleep(100);
        }
      }
    };
    const writers = ids.map((id, i) => writer(id, i));
    await sleep(3_000);
    // Objects written this fast have pending index entries (their totals ride on their puts): the kill lands then.
    const pendingEntries = async () => {
      const nc = await nats.connect();
      try {
        const jsm = await jetstreamManager(nc);
        const names = classNames('castellan', 'default', CLS);
        let n = 0;
        for (const id of ids) {
          const m = await jsm.streams.getMessage(names.stream, { last_by_subj: indexNames(names).subject(encodeId(id)) });
          if (m !== null && decodeSummary(m.data, m.header?.get(OP_HEADER))?.pending === true) n++;
        }
        return n;
      } finally {
        await nc.close();
      }
    };
    expect(await pendingEntries()).toBeGreaterThan(10);
    const victim = hosts[0]!;
    signal(victim, 'SIGKILL');
    if (victim.app !== undefined) signal(victim.app, 'SIGKILL');
    await sleep(6_000);
    stop = true;
    await Promise.all(writers);
    expect(victim.child.signalCode ?? 'SIGKILL').toBe('SIGKILL');
    hosts.splice(0, 1);
    // Whatever landed, the listing's summary equals the object's storage as read from the stream
    // (the victim's objects are left pending; the survivors' settle once the writers stop).
    for (const id of ids) {
      const keys = (await api(`/${encodeURIComponent(id)}/keys?limit=1000`)).body as { entries: { key: string; value: string }[] };
      const bytes = keys.entries.reduce((n, e) => n + Buffer.byteLength(e.key, 'utf8') + Buffer.from(e.value, 'base64').length, 0);
      const one = (await api(`/${encodeURIComponent(id)}`)).body as Listed;
      expect({ id, keys: one.keys, bytes: one.bytes }).toEqual({ id, keys: keys.entries.length, bytes });
      if (!unsure.has(id)) expect(one.keys).toBe(expected.get(id)!.size);
    }
    const listed = await listAll({ prefix: 'kill.', limit: 7 });
    expect(listed.map((o) => o.id)).toEqual([...ids].sort(compareKeys));
  }, 240_000);

  it('adds the entry of an object written before the index existed when the object is activated again', async () => {
    const id = 'legacy.1';
    await put(id, 'a', 5);
    await put(id, 'b', 7);
    await put(id, 'c', 0);
    // Idle release (4 s), then the entry removed as if the object predated the index.
    await waitFor(`${id} released`, async () => (((await api(`/${encodeURIComponent(id)}`)).body as Listed).host === null ? true : undefined), { timeoutMs: 30_000, intervalMs: 500 });
    const nc = await nats.connect();
    try {
      const names = classNames('castellan', 'default', CLS);
      await (await jetstreamManager(nc)).streams.purge(names.stream, { filter: indexNames(names).subject(encodeId(id)) });
    } finally {
      await nc.close();
    }
    expect((await api(`/${encodeURIComponent(id)}`)).status).toBe(404);
    // Any call activates it; the activation finds no entry for its keys and writes one.
    expect((await call(id, '/keys/a')).status).toBe(200);
    const one = await waitFor(`${id} listed again`, async () => {
      const r = await api(`/${encodeURIComponent(id)}`);
      return r.status === 200 ? (r.body as Listed) : undefined;
    }, { timeoutMs: 20_000, intervalMs: 200 });
    expect({ keys: one.keys, bytes: one.bytes }).toEqual({ keys: 3, bytes: bytesOf(expected.get(id)) });
  }, 90_000);

  it('gives the operator an approximate object count and the stored bytes of the class', async () => {
    const all = await listAll({ limit: 1000 });
    const nc = await nats.connect();
    try {
      const stats = await objectClassStats(nc, { prefix: 'castellan', namespace: 'default', cls: CLS }, logger('test'));
      // Every listed object, plus entries of objects deleted in the last hour (tombstones): 32 deleted, 10 emptied, 1 alarm removed.
      expect(stats!.approximateObjects).toBeGreaterThanOrEqual(all.length);
      expect(stats!.approximateObjects).toBeLessThanOrEqual(all.length + 43);
      expect(stats!.storedBytes).toBeGreaterThan(all.reduce((n, o) => n + o.bytes, 0));
    } finally {
      await nc.close();
    }
  }, 60_000);
});
