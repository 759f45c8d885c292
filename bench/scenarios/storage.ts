/**
 * Scenario 4 — object storage writes, driven against the owning host's
 * sidecar storage API (SPEC §2.2) while a turn of the object is held open there:
 * PUT latency (1 in flight) vs a raw JetStream R3 publish from the same Node
 * client with the same server sync settings (`sync_interval: always`), and
 * committed transactions per second for one object vs raw R3 publishes per
 * second at the same concurrency. Its own class and host, with long request
 * and turn limits: the held turn spans every round (a full run holds it for
 * over a minute, past the default 30 s request and 60 s turn limits).
 */
import { randomBytes } from 'node:crypto';
import { compare } from '../lib/load.ts';
import { rawStream } from '../lib/jetstream.ts';
import { assertHealthy, latencyResult, throughputResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { holdTurn, put, requireStorage, storageBase, transaction } from '../lib/storage.ts';
import { LONG_TURNS } from './activation.ts';

export const storage: Scenario = {
  name: 'storage',
  title: 'Storage PUT latency and transactions/s vs raw JetStream R3 publish',
  async run(ctx: Ctx) {
    const host = await ctx.env.startHost('bench-store', LONG_TURNS);
    const id = 'store-0';
    // Storage is served only during a turn of the object: hold one open while driving it from here.
    let endTurn = await holdTurn(host, id);
    const base = storageBase(host.sidecar.url, host.cls, id);
    const stream = await rawStream(await ctx.nc(), 'BENCH_KV');
    try {
      await requireStorage(host.sidecar.url, host.cls, id);
      const value = randomBytes(128);
      const b64 = value.toString('base64');
      const { p } = ctx;
      const count = Math.max(10, Math.floor(p.latencyCount / 2));
      ctx.log(`PUT latency: ${count} sequential writes each`);
      const lat = await compare(
        (i) => put(base, `k${i % 100}`, value),
        (i) => stream.js.publish(`${stream.subject}.k${i % 100}`, value),
        { concurrency: 1, count, rounds: p.rounds, warmup: 10 },
      );
      assertHealthy('storage PUT', lat.subject);
      // A fresh turn per phase keeps each well within turnTimeout (60 s).
      await endTurn();
      endTurn = await holdTurn(host, id);
      ctx.log(`transactions: ${p.concurrency} in flight for ${p.throughputMs} ms each`);
      const tx = await compare(
        (i) =>
          transaction(base, [
            { op: 'put', key: `t${i % 50}`, value: b64 },
            { op: 'put', key: 'last', value: b64 },
          ]),
        (i) => stream.js.publish(`${stream.subject}.t${i % 50}`, value),
        { concurrency: p.concurrency, durationMs: p.throughputMs, rounds: p.rounds },
      );
      assertHealthy('storage transactions', tx.subject);
      return [
        latencyResult('storage', 'storage PUT latency (128 B value)', lat.subject.latencies, 'JetStream R3 publish (sync always)', lat.baseline.latencies, {
          errors: lat.subject.errors,
          target: { text: 'p50 ≤ 1.3× baseline', met: (r) => r.ratio <= 1.3 },
        }),
        throughputResult('storage', `committed transactions/s, one object (2 puts each, ${p.concurrency} in flight)`, tx.subject, `JetStream R3 publishes/s (${p.concurrency} in flight)`, tx.baseline, {
          unit: 'tx/s',
          target: { text: '≥ 0.9× raw publishes', met: (r) => r.ratio >= 0.9 },
        }),
      ];
    } finally {
      await stream.remove();
      await endTurn();
      await ctx.env.stopHosts([host]);
    }
  },
};
