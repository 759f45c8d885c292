/**
 * Scenario — object listing (issue 18):
 *
 * 1. Write cost of the object index: storage PUTs of one key each through
 *    the real commit path (ObjectState + Journal, in this process, fenced on
 *    real owner records in an R3 class stream), with the listing hook against
 *    the same path without it, alternating rounds in the same run. Two
 *    workloads: overwrites with values of the same size (the summary stays
 *    the same: written at most once a second per object) and values that
 *    change size on every write (worst case: every batch carries a summary,
 *    one PUT becomes a batch of two messages). Target: ≥ 0.9.
 * 2. Page latency at scale: a class whose index holds N objects (written
 *    straight into the class stream in the index layout, with K storage keys
 *    per object beside them, so the stream is as big as such a class's), one
 *    client sidecar: `GET …/objects?after=<random>&limit=100` p50/p99 against
 *    the same on a class of 1,000 objects. Target: ≤ 100 ms. Both classes are
 *    written as atomic batches into a 3-node cluster of the scenario's own,
 *    without `sync_interval: always` (only reads are measured). The time the
 *    sidecar's first listing took to build its view of the big class is
 *    reported as an extra number. CASTELLAN_BENCH_LISTING_OBJECTS overrides N.
 */
import { randomBytes } from 'node:crypto';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { encodeSummary, indexNames, SUMMARY_HEADER } from '../../sidecar/listing/layout.ts';
import { encodeCursor } from '../../sidecar/listing/query.ts';
import { objectIndexHook } from '../../sidecar/listing/summary.ts';
import { CONFLICT, ObjectStore } from '../../sidecar/objects/ownership-store.ts';
import { encodeId } from '../../sidecar/objects/subjects.ts';
import { isNoResponders } from '../../sidecar/nats-errors.ts';
import { Journal, keyToken } from '../../sidecar/storage/journal.ts';
import { createStorageMetrics } from '../../sidecar/storage/metrics.ts';
import { VALUE_CACHE_BYTES } from '../../sidecar/storage/storage.ts';
import { ValueCache } from '../../sidecar/storage/value-cache.ts';
import { ObjectState, type StateContext } from '../../sidecar/storage/object-state.ts';
import { BenchEnv } from '../lib/env.ts';
import { http } from '../lib/http.ts';
import { compare } from '../lib/load.ts';
import { latencyResult, throughputResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';

const PREFIX = 'castellan';
const NS = 'default';

const sizes = {
  smoke: { objects: 300, keys: 1, pages: 10 },
  quick: { objects: 100_000, keys: 10, pages: 200 },
  full: { objects: 1_000_000, keys: 10, pages: 1_000 },
};

/** Messages per atomic batch while populating (the server takes up to 1,000), and batches in flight. */
const POPULATE_BATCH = 800;
const POPULATE_IN_FLIGHT = 8;

/**
 * Writes `objects` index entries (and `keys` storage keys each) into the
 * class stream, as JetStream atomic batches (one replicated, synced append per
 * batch instead of per message: the stream is built in minutes, not hours).
 */
async function populate(ctx: Ctx, nc: NatsConnection, cls: string, objects: number, keys: number, idOf: (i: number) => string): Promise<number> {
  const store = new ObjectStore(nc, { prefix: PREFIX, namespace: NS, timeoutMs: 15_000, log: logger('bench.listing') });
  await store.ensureStream(cls, 3);
  const names = store.names(cls);
  const idx = indexNames(names);
  const value = new Uint8Array(16);
  const t0 = performance.now();
  const window = new Set<Promise<unknown>>();
  let last = performance.now();
  let batch: { subject: string; data: Uint8Array; header: [string, string] }[] = [];
  /** One atomic batch; a stream that was created a moment ago may not take requests yet ("no responders": nothing was stored), so that is retried. */
  const send = async (msgs: typeof batch): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const id = randomBytes(8).toString('hex');
      try {
        let reply: Promise<{ data: Uint8Array }> | undefined;
        for (let i = 0; i < msgs.length; i++) {
          const m = msgs[i]!;
          const h = natsHeaders();
          h.set(m.header[0], m.header[1]);
          h.set('Nats-Batch-Id', id);
          h.set('Nats-Batch-Sequence', String(i + 1));
          if (i < msgs.length - 1) nc.publish(m.subject, m.data, { headers: h });
          else {
            h.set('Nats-Batch-Commit', '1');
            reply = nc.request(m.subject, m.data, { headers: h, timeout: 60_000 });
          }
        }
        const ack = JSON.parse(new TextDecoder().decode((await reply!).data)) as { error?: { description?: string }; count?: number };
        if (ack.error !== undefined || ack.count !== msgs.length) throw new Error(`populating ${cls}: batch refused: ${JSON.stringify(ack)}`);
        return;
      } catch (err) {
        if (attempt >= 50 || !isNoResponders(err)) throw err;
        await sleep(100);
      }
    }
  };
  const flush = () => {
    const msgs = batch;
    batch = [];
    if (msgs.length === 0) return;
    const commit = send(msgs);
    window.add(commit);
    void commit.finally(() => window.delete(commit)).catch(() => undefined);
  };
  for (let i = 0; i < objects; i++) {
    const encId = encodeId(idOf(i));
    for (let k = 0; k < keys; k++) {
      const key = `key-${k}`;
      batch.push({ subject: names.kv(encId, keyToken(key)), data: value, header: ['Castellan-Key', Buffer.from(key).toString('base64url')] });
    }
    batch.push({ subject: idx.subject(encId), data: encodeSummary({ keys, bytes: keys * (5 + 16), lastWrite: Date.now() }), header: [SUMMARY_HEADER, '1'] });
    if (batch.length >= POPULATE_BATCH) {
      flush();
      while (window.size >= POPULATE_IN_FLIGHT) await Promise.race(window);
    }
    if (performance.now() - last > 15_000) {
      last = performance.now();
      ctx.log(`populating ${cls}: ${i + 1}/${objects} objects (${Math.round(((i + 1) * (keys + 1)) / ((last - t0) / 1000))} msg/s)`);
    }
  }
  flush();
  await Promise.all(window);
  return (performance.now() - t0) / 1000;
}

export const listing: Scenario = {
  name: 'listing',
  title: 'Object listing: index write cost, and page latency at a large object count',
  async run(ctx: Ctx) {
    const results = [];
    const nc = await ctx.nc();
    const log = logger('bench.listing');

    // 1. Write cost: the commit path with and without the index summary.
    {
      const cls = 'bench-listing-writes';
      const store = new ObjectStore(nc, { prefix: PREFIX, namespace: NS, timeoutMs: 15_000, log });
      await store.ensureStream(cls, 3);
      const names = store.names(cls);
      const journal = new Journal(nc, 10_000);
      const metrics = createStorageMetrics(new Registry());
      const base: StateContext = { cls, names, journal, metrics, log, cache: new ValueCache(VALUE_CACHE_BYTES) };
      const withIndex: StateContext = { ...base, index: objectIndexHook(names) };
      const objects = ctx.mode === 'smoke' ? 8 : 64;
      const make = async (ctxS: StateContext, tag: string) => {
        const out: ObjectState[] = [];
        for (let i = 0; i < objects; i++) {
          const id = `${tag}-${i}`;
          const encId = encodeId(id);
          const token = await store.writeOwner(cls, encId, 0, { state: 'owned', pod: 'bench', sessionId: 'bench', ts: Date.now() });
          if (token === CONFLICT) throw new Error(`owner record of ${id} exists already`);
          out.push(new ObjectState(ctxS, encId, id, token));
        }
        return out;
      };
      const tag = randomBytes(4).toString('hex');
      const indexed = await make(withIndex, `i${tag}`);
      const plain = await make(base, `p${tag}`);
      const workloads = [
        { name: 'same-size overwrites', value: (_i: number) => new Uint8Array(100) },
        { name: 'values changing size on every write', value: (i: number) => new Uint8Array(64 + (i % 128)) },
      ];
      for (const w of workloads) {
        const put = (states: ObjectState[]) => (i: number) => states[i % objects]!.write({ checks: [], ops: [{ op: 'put', key: `k${i % 10}`, value: w.value(i) }] });
        const r = await compare(put(indexed), put(plain), { concurrency: ctx.p.concurrency, durationMs: ctx.p.throughputMs * 2, rounds: ctx.p.rounds, warmup: ctx.mode === 'smoke' ? 10 : 200 });
        results.push(
          throughputResult('listing', `storage PUTs with the object index, ${w.name}`, r.subject, 'the same PUTs without the index', r.baseline, {
            unit: 'writes/s',
            target: { text: 'keeping the index costs ≤ 10 % of write throughput (ratio ≥ 0.9)', met: (x) => x.ratio >= 0.9 },
            notes: `${objects} objects, one key per PUT, ${ctx.p.concurrency} writers, commit path in-process (ObjectState + Journal) on an R3 stream`,
          }),
        );
      }
    }

    // 2. Page latency: a big class and a small one, listed through a client sidecar.
    {
      const override = Number(process.env.CASTELLAN_BENCH_LISTING_OBJECTS ?? '');
      const n = Number.isInteger(override) && override > 0 ? { ...sizes[ctx.mode], objects: override } : sizes[ctx.mode];
      const big = 'bench-listing-big';
      const small = 'bench-listing-small';
      const idOf = (i: number) => `user-${(i * 7_919) % n.objects}`.padEnd(12, '.');
      // Only reads are measured here: the classes live on a cluster of their own without per-write
      // fsync, so that 11,000,000 messages are written in minutes (with it, this VM syncs ~2,000/s).
      const env = await BenchEnv.start({ syncAlways: false });
      try {
        const nc = await env.connect();
        ctx.log(`writing ${n.objects} objects × ${n.keys} keys into ${big}`);
        const seconds = await populate(ctx, nc, big, n.objects, n.keys, idOf);
        ctx.log(`wrote ${n.objects * (n.keys + 1)} messages in ${seconds.toFixed(0)} s`);
        const smallCount = Math.min(1_000, n.objects);
        await populate(ctx, nc, small, smallCount, n.keys, (i) => `user-${i}`.padEnd(12, '.'));
        const client = await env.startClient();
        const page = async (cls: string, after: string | undefined) => {
          const q = after === undefined ? 'limit=100' : `limit=100&after=${after}`;
          const r = await http(`${client.url}/v1/classes/${cls}/objects?${q}`, { timeoutMs: 600_000 });
          if (r.status !== 200) throw new Error(`listing ${cls}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
          const body = JSON.parse(r.body.toString('utf8')) as { objects: unknown[] };
          if (body.objects.length === 0 && after === undefined) throw new Error(`listing ${cls} came back empty`);
        };
        const t0 = performance.now();
        // The first listing waits up to 20 s for the sidecar's view, then answers 503 INDEX_LOADING (retryable).
        for (let attempt = 0; ; attempt++) {
          try {
            await page(big, undefined);
            break;
          } catch (err) {
            if (attempt > 60 || !String(err).includes('INDEX_LOADING')) throw err;
          }
        }
        const coldMs = performance.now() - t0;
        ctx.log(`first listing of ${big} (builds the sidecar's view of ${n.objects} objects): ${coldMs.toFixed(0)} ms`);
        await page(small, undefined);
        const cursorFor = (objects: number, i: number) => encodeCursor(`user-${(i * 104_729) % objects}`.padEnd(12, '.'));
        const bigTimes: number[] = [];
        const smallTimes: number[] = [];
        for (let i = 0; i < n.pages; i++) {
          let s = performance.now();
          await page(small, cursorFor(smallCount, i));
          smallTimes.push(performance.now() - s);
          s = performance.now();
          await page(big, cursorFor(n.objects, i));
          bigTimes.push(performance.now() - s);
        }
        results.push(
          latencyResult('listing', `list page of 100, class of ${n.objects.toLocaleString('en')} objects and ${(n.objects * n.keys).toLocaleString('en')} keys`, bigTimes, `same page, class of ${smallCount.toLocaleString('en')} objects`, smallTimes, {
            target: { text: 'a page of 100 ids ≤ 100 ms', met: (x) => (x.p99 ?? x.value) <= 100 },
            extra: { objects: n.objects, keysPerObject: n.keys, streamMessages: n.objects * (n.keys + 1), firstListingMs: Math.round(coldMs), populateSeconds: Math.round(seconds) },
            notes: `random start cursors; the index view of the class is in the client sidecar's memory after its first listing (firstListingMs); both classes on a 3-node cluster of their own without sync_interval always (only reads are measured)`,
          }),
        );
        await env.stop(client);
      } finally {
        await env.dispose();
      }
    }
    return results;
  },
};
