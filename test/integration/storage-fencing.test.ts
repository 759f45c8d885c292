/**
 * Storage fencing against real JetStream (3 nodes, R3): a commit lands only
 * while the owner record is still at the writer's activation token. Drives the
 * journal and object state directly with owner records written the way hosts
 * write them (ownership-store.ts), so the stale writer is really still trying
 * to write — no lease check in between.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { logger } from '../../common/logger.ts';
import { CONFLICT, ObjectStore } from '../../sidecar/objects/ownership-store.ts';
import { encodeId } from '../../sidecar/objects/subjects.ts';
import { FencedError, Journal, putMessage } from '../../sidecar/storage/journal.ts';
import { VALUE_CACHE_BYTES } from '../../sidecar/storage/storage.ts';
import { ValueCache } from '../../sidecar/storage/value-cache.ts';
import { createStorageMetrics } from '../../sidecar/storage/metrics.ts';
import { ObjectState, type StateContext } from '../../sidecar/storage/object-state.ts';
import { startNats, type TestNats } from '../harness/nats.ts';

const CLS = 'fenced';
const log = logger('test.storage-fencing');

describe('storage fencing', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let store: ObjectStore;
  let journal: Journal;
  let ctx: StateContext;

  beforeAll(async () => {
    nats = await startNats(3);
    nc = await nats.connect();
    store = new ObjectStore(nc, { prefix: 'castellan', namespace: 'default', timeoutMs: 5_000, log });
    await store.ensureStream(CLS, 3);
    journal = new Journal(nc, 5_000);
    ctx = { cls: CLS, names: store.names(CLS), journal, metrics: createStorageMetrics(new Registry()), log, cache: new ValueCache(VALUE_CACHE_BYTES) };
  }, 90_000);

  afterAll(async () => {
    await nats?.dispose();
  }, 30_000);

  /**
   * Claims like a host does: compare-and-set on the owner record, retried on
   * a conflict while the record is still at `expect` (JetStream refuses a
   * subject CAS while a batch fenced on that subject is in flight).
   */
  const claim = async (encId: string, expect: number, pod: string) => {
    for (let i = 0; i < 100; i++) {
      const r = await store.writeOwner(CLS, encId, expect, { state: 'owned', pod, sessionId: `${pod}-s`, ts: Date.now() });
      if (r !== CONFLICT) return r;
      const cur = await store.readOwner(CLS, encId);
      if ((cur?.seq ?? 0) !== expect) throw new Error('owner record moved');
      await new Promise((res) => setTimeout(res, 5));
    }
    throw new Error('claim kept conflicting');
  };

  it('rejects a stale owner batch whole and keeps the new owner view exact', async () => {
    const encId = encodeId('obj-1');
    const names = store.names(CLS);
    const tokenA = await claim(encId, 0, 'a');
    await journal.commit(names, encId, tokenA, [putMessage(names, encId, 'k', Buffer.from('A1')), putMessage(names, encId, 'j', Buffer.from('A1'))]);
    const tokenB = await claim(encId, tokenA, 'b');
    await expect(journal.commit(names, encId, tokenA, [putMessage(names, encId, 'k', Buffer.from('stale')), putMessage(names, encId, 'n', Buffer.from('stale'))])).rejects.toBeInstanceOf(FencedError);
    const loaded = await journal.loadWithValues(names, encId, tokenB);
    expect([...loaded.entries.keys()].sort()).toEqual(['j', 'k']);
    expect(Buffer.from(loaded.entries.get('k')!.value).toString()).toBe('A1');
    await expect(journal.loadWithValues(names, encId, tokenA)).rejects.toBeInstanceOf(FencedError);
  }, 60_000);

  it('an activation that lost ownership answers NOT_OWNER and writes nothing', async () => {
    const encId = encodeId('obj-2');
    const tokenA = await claim(encId, 0, 'a');
    const stale = new ObjectState(ctx, encId, 'obj-2', tokenA);
    await stale.write({ checks: [], ops: [{ op: 'put', key: 'v', value: Buffer.from('1') }] });
    const tokenB = await claim(encId, tokenA, 'b');
    const fresh = new ObjectState(ctx, encId, 'obj-2', tokenB);
    await fresh.write({ checks: [], ops: [{ op: 'put', key: 'v', value: Buffer.from('2') }] });
    // The stale index still thinks v=1 with its version: its checks pass locally, the fence refuses.
    const v1 = (await stale.read()).get('v')!.version;
    await expect(stale.write({ checks: [{ key: 'v', version: v1 }], ops: [{ op: 'put', key: 'v', value: Buffer.from('stale') }] })).rejects.toMatchObject({ status: 409, code: 'NOT_OWNER' });
    expect(stale.isDead).toBe(true);
    await expect(stale.read()).rejects.toMatchObject({ code: 'NOT_OWNER' });
    const check = new ObjectState(ctx, encId, 'obj-2', tokenB);
    expect(Buffer.from((await check.get('v'))!.value).toString()).toBe('2');
  }, 60_000);

  it('racing commits against a takeover: each lands whole before it or not at all', async () => {
    const encId = encodeId('obj-3');
    const names = store.names(CLS);
    const tokenA = await claim(encId, 0, 'a');
    const results: ('ok' | 'fenced')[] = [];
    const writes = Array.from({ length: 40 }, (_, i) =>
      (async () => {
        await new Promise((r) => setTimeout(r, i * 3));
        try {
          await journal.commit(names, encId, tokenA, [putMessage(names, encId, `w${i}/a`, Buffer.from(String(i))), putMessage(names, encId, `w${i}/b`, Buffer.from(String(i)))]);
          results[i] = 'ok';
        } catch (err) {
          if (!(err instanceof FencedError)) throw err;
          results[i] = 'fenced';
        }
      })(),
    );
    await new Promise((r) => setTimeout(r, 40));
    const tokenB = await claim(encId, tokenA, 'b');
    await Promise.all(writes);
    const loaded = await journal.loadWithValues(names, encId, tokenB);
    const landed = results.map((r, i) => (r === 'ok' ? i : -1)).filter((i) => i >= 0);
    console.log(`racing takeover: ${landed.length} of 40 commits landed before the takeover, ${40 - landed.length} fenced`);
    expect(results.filter((r) => r === 'fenced').length).toBeGreaterThan(0);
    for (let i = 0; i < 40; i++) {
      const a = loaded.entries.get(`w${i}/a`);
      const b = loaded.entries.get(`w${i}/b`);
      if (results[i] === 'ok') {
        expect(a).toBeDefined();
        expect(b).toBeDefined();
        // Fenced commits land nothing, and a landed one is before the takeover.
        expect(a!.version).toBeLessThan(tokenB);
      } else {
        expect(a).toBeUndefined();
        expect(b).toBeUndefined();
      }
    }
  }, 60_000);

  it('enforces if-match and transaction version checks in JetStream, not only in the index', async () => {
    const encId = encodeId('obj-checks');
    const token = await claim(encId, 0, 'a');
    const current = new ObjectState(ctx, encId, 'obj-checks', token);
    const v1 = (await current.write({ checks: [], ops: [{ op: 'put', key: 'k', value: Buffer.from('1') }] })).versions.get('k')!;
    // A second view at the same token, loaded now: it will not see the next write (a stale index).
    const stale = new ObjectState(ctx, encId, 'obj-checks', token);
    expect((await stale.read()).get('k')!.version).toBe(v1);
    const v2 = (await current.write({ checks: [{ key: 'k', version: v1 }], ops: [{ op: 'put', key: 'k', value: Buffer.from('2') }] })).versions.get('k')!;
    // The stale index passes `if-match: v1`; JetStream refuses it; re-planned against the reloaded state it is a definite 409.
    await expect(stale.write({ checks: [{ key: 'k', version: v1 }], ops: [{ op: 'put', key: 'k', value: Buffer.from('stale') }] })).rejects.toMatchObject({ status: 409, code: 'CONFLICT' });
    await expect(stale.write({ checks: [{ key: 'k', version: v1 }], ops: [{ op: 'put', key: 'other', value: Buffer.from('stale') }] })).rejects.toMatchObject({ status: 409, code: 'CONFLICT' });
    expect(stale.isDead).toBe(false);
    const check = new ObjectState(ctx, encId, 'obj-checks', token);
    const idx = await check.read();
    expect(Buffer.from((await check.get('k'))!.value).toString()).toBe('2');
    expect(idx.get('k')!.version).toBe(v2);
    expect(idx.get('other')).toBeUndefined();
    // The re-synchronised view writes on.
    await expect(stale.write({ checks: [{ key: 'k', version: v2 }], ops: [{ op: 'put', key: 'k', value: Buffer.from('3') }] })).resolves.toBeDefined();
  }, 60_000);

  it('enforces absence checks in JetStream too: at the known tombstone, or never written', async () => {
    const encId = encodeId('obj-absent');
    const token = await claim(encId, 0, 'a');
    const current = new ObjectState(ctx, encId, 'obj-absent', token);
    await current.write({ checks: [], ops: [{ op: 'put', key: 'gone', value: Buffer.from('1') }] });
    await current.write({ checks: [], ops: [{ op: 'delete', key: 'gone' }] });
    // Two views at the same token, loaded now: `gone` deleted (its tombstone known), `new` never written.
    const stale1 = new ObjectState(ctx, encId, 'obj-absent', token);
    const stale2 = new ObjectState(ctx, encId, 'obj-absent', token);
    expect((await stale1.read()).absentAt('gone')).toBeGreaterThan(0);
    expect((await stale2.read()).absentAt('new')).toBe(0);
    // Absent checks against a tombstone and against nothing pass, and are what JetStream checked.
    await current.write({ checks: [{ key: 'gone', absent: true }], ops: [{ op: 'put', key: 'gone', value: Buffer.from('c') }] });
    await current.write({ checks: [{ key: 'new', absent: true }], ops: [{ op: 'put', key: 'new', value: Buffer.from('c') }] });
    // The stale indexes pass the absence checks; JetStream refuses them; re-planned they are definite 409s.
    await expect(stale1.write({ checks: [{ key: 'gone', absent: true }], ops: [{ op: 'put', key: 'gone', value: Buffer.from('stale') }] })).rejects.toMatchObject({ status: 409, code: 'CONFLICT' });
    await expect(stale2.write({ checks: [{ key: 'new', absent: true }], ops: [{ op: 'put', key: 'new', value: Buffer.from('stale') }] })).rejects.toMatchObject({ status: 409, code: 'CONFLICT' });
    const check = new ObjectState(ctx, encId, 'obj-absent', token);
    expect(Buffer.from((await check.get('gone'))!.value).toString()).toBe('c');
    expect(Buffer.from((await check.get('new'))!.value).toString()).toBe('c');
  }, 60_000);

  it('reads values on demand at the index version, and bounds a list answer by value bytes', async () => {
    const encId = encodeId('obj-mib');
    const token = await claim(encId, 0, 'a');
    const writer = new ObjectState(ctx, encId, 'obj-mib', token);
    const mib = (i: number) => Buffer.alloc(1024 * 1024, i);
    await Promise.all(Array.from({ length: 20 }, (_, i) => writer.write({ checks: [], ops: [{ op: 'put', key: `m${String(i).padStart(2, '0')}`, value: mib(i) }] })));
    // A fresh view (empty value cache: its own) reads everything from the stream.
    const reader = new ObjectState({ ...ctx, cache: new ValueCache(VALUE_CACHE_BYTES) }, encId, 'obj-mib', token);
    const page = await reader.list({ limit: 1000, reverse: false });
    expect(page.truncated).toBe(true);
    expect(page.entries.length).toBe(16);
    page.entries.forEach((e, i) => expect(Buffer.from(e.entry.value).equals(mib(i))).toBe(true));
    const next = await reader.list({ startAfter: page.entries.at(-1)!.key, limit: 1000, reverse: false });
    expect(next.entries.map((e) => e.key)).toEqual(['m16', 'm17', 'm18', 'm19']);
    expect(next.truncated).toBe(false);
    // A write by the current view replaces the version a stale reader's index names: its read refuses
    // the other value, re-synchronises, and answers the current one.
    const stale = new ObjectState({ ...ctx, cache: new ValueCache(VALUE_CACHE_BYTES) }, encId, 'obj-mib', token);
    const before = (await stale.read()).get('m03')!.version;
    const v2 = (await writer.write({ checks: [], ops: [{ op: 'put', key: 'm03', value: Buffer.from('small') }] })).versions.get('m03')!;
    expect(v2).toBeGreaterThan(before);
    const got = await stale.get('m03');
    expect({ version: got?.version, value: Buffer.from(got!.value).toString() }).toEqual({ version: v2, value: 'small' });
  }, 90_000);

  it('does not answer a check decided by a pending write before that write is known', async () => {
    const encId = encodeId('obj-pending');
    const tokenA = await claim(encId, 0, 'a');
    const st = new ObjectState(ctx, encId, 'obj-pending', tokenA);
    await st.read();
    await claim(encId, tokenA, 'b');
    // One batch: a blind put of k (fenced: it will fail), then if-none-match on k — decided only after the put's outcome.
    const [put, guarded] = await Promise.allSettled([
      st.write({ checks: [], ops: [{ op: 'put', key: 'k', value: Buffer.from('1') }] }),
      st.write({ checks: [{ key: 'k', absent: true }], ops: [{ op: 'put', key: 'k', value: Buffer.from('2') }] }),
    ]);
    expect(put).toMatchObject({ status: 'rejected', reason: { code: 'NOT_OWNER' } });
    // Not a 409 CONFLICT claiming k exists: k was never written.
    expect(guarded).toMatchObject({ status: 'rejected', reason: { code: 'NOT_OWNER' } });
  }, 60_000);

  it('fails only the write whose value the NATS server cannot take', async () => {
    const encId = encodeId('obj-oversize');
    const token = await claim(encId, 0, 'a');
    const st = new ObjectState(ctx, encId, 'obj-oversize', token);
    await st.read();
    const huge = Buffer.alloc((nc.info?.max_payload ?? 8 * 1024 * 1024) + 1, 1);
    const results = await Promise.allSettled([
      st.write({ checks: [], ops: [{ op: 'put', key: 'a', value: Buffer.from('a') }] }),
      st.write({ checks: [], ops: [{ op: 'put', key: 'b', value: Buffer.from('b') }] }),
      st.write({ checks: [], ops: [{ op: 'put', key: 'huge', value: huge }] }),
      st.write({ checks: [], ops: [{ op: 'put', key: 'c', value: Buffer.from('c') }] }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ status: 413 });
    expect([...(await new ObjectState(ctx, encId, 'obj-oversize', token).read()).keys()].sort()).toEqual(['a', 'b', 'c']);
  }, 60_000);

  it('coalesces concurrent writes of one object into fewer commits with serial semantics', async () => {
    const encId = encodeId('obj-4');
    const token = await claim(encId, 0, 'a');
    const st = new ObjectState(ctx, encId, 'obj-4', token);
    await st.read();
    const before = (await ctx.metrics.commits.get()).values.reduce((n, v) => n + v.value, 0);
    // 50 writers race on if-none-match for one key: exactly one wins.
    const res = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => st.write({ checks: [{ key: 'once', absent: true }], ops: [{ op: 'put', key: 'once', value: Buffer.from(String(i)) }] })));
    expect(res.filter((r) => r.status === 'fulfilled').length).toBe(1);
    expect(res.filter((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'CONFLICT').length).toBe(49);
    // 100 blind puts of distinct keys: all land, in far fewer commits.
    const puts = await Promise.all(Array.from({ length: 100 }, (_, i) => st.write({ checks: [], ops: [{ op: 'put', key: `p${i}`, value: Buffer.from('x') }] })));
    const after = (await ctx.metrics.commits.get()).values.reduce((n, v) => n + v.value, 0);
    console.log(`coalescing: 150 writes in ${after - before} commits`);
    expect(after - before).toBeLessThan(150);
    expect(new Set(puts.map((p) => [...p.versions.values()][0])).size).toBe(100);
    const reread = new ObjectState(ctx, encId, 'obj-4', token);
    expect((await reread.read()).size).toBe(101);
  }, 60_000);
  it('loads an object bigger than one multi-last answer (paged), exactly', async () => {
    const encId = encodeId('obj-big');
    const token = await claim(encId, 0, 'a');
    const st = new ObjectState(ctx, encId, 'obj-big', token);
    await st.read();
    await Promise.all(Array.from({ length: 2500 }, (_, i) => st.write({ checks: [], ops: [{ op: 'put', key: `k${i}`, value: Buffer.from(`v${i}`) }] })));
    await st.write({ checks: [], ops: [{ op: 'put', key: 'k7', value: Buffer.from('newer') }, { op: 'delete', key: 'k8' }] });
    const loaded = await journal.loadWithValues(store.names(CLS), encId, token);
    expect(loaded.entries.size).toBe(2499);
    expect(Buffer.from(loaded.entries.get('k7')!.value).toString()).toBe('newer');
    expect(loaded.entries.has('k8')).toBe(false);
    expect(Buffer.from(loaded.entries.get('k2499')!.value).toString()).toBe('v2499');
    // Activation's keys-only load of the same object: keys, versions, sizes and the tombstone; values on demand.
    const fresh = new ObjectState(ctx, encId, 'obj-big', token);
    const idx = await fresh.read();
    expect(idx.size).toBe(2499);
    expect(idx.get('k7')).toEqual({ version: loaded.entries.get('k7')!.version, size: 5 });
    expect(idx.absentAt('k8')).toBeGreaterThan(0);
    expect(Buffer.from((await fresh.get('k7'))!.value).toString()).toBe('newer');
    expect(await fresh.get('k8')).toBeUndefined();
    const page = await fresh.list({ prefix: 'k24', limit: 5, reverse: false });
    expect(page.truncated).toBe(true);
    expect(page.entries.map((e) => [e.key, Buffer.from(e.entry.value).toString()])).toEqual(['k24', 'k240', 'k2400', 'k2401', 'k2402'].map((k) => [k, `v${k.slice(1)}`]));
  }, 90_000);
});
