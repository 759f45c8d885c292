/**
 * Scenario 7 (objects) — failover: kill -9 an object's owner host (sidecar
 * and app, like a pod dying) and time until the first successful call to
 * that object through a client sidecar. Baseline: the JetStream failover the
 * ownership records are built on — kill -9 the NATS server leading an R3
 * stream and time until the next acknowledged publish. Killed hosts and
 * servers are replaced before the next repetition. Uses the default host
 * lease TTL (1 s), as a user would get.
 */
import { sleep } from '../../common/net.ts';
import { exited } from '../../common/children.ts';
import { rawStream } from '../lib/jetstream.ts';
import { http } from '../lib/http.ts';
import { call, objectUrl, owner, startObjectsFixture, type ObjectsFixture } from '../lib/objects.ts';
import { latencyResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';

/** kill -9 the owner of a fresh object `iters` times; ms from the kill to the first call served by another host. */
async function objectFailovers(ctx: Ctx, fx: ObjectsFixture, iters: number, label: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iters; i++) {
    const id = `failover-${Date.now()}-${i}`;
    const ownerName = await owner(fx.client.url, fx.cls, id);
    const idx = fx.hosts.findIndex((h) => h.name === ownerName);
    const victim = fx.hosts[idx];
    if (victim === undefined) throw new Error(`object ${id} is on unknown host ${ownerName}`);
    await call(fx.client.url, fx.cls, id);
    const killedAt = performance.now();
    ctx.env.killHost(victim);
    for (;;) {
      if (performance.now() - killedAt > 60_000) throw new Error(`object ${id} not served within 60 s of its owner's kill -9`);
      const r = await http(objectUrl(fx.client.url, fx.cls, id, '/whoami'), { timeoutMs: 30_000 }).catch(() => undefined);
      if (r?.status === 200 && (JSON.parse(r.body.toString('utf8')) as { host: string }).host !== victim.name) break;
      await sleep(5);
    }
    const ms = performance.now() - killedAt;
    out.push(ms);
    ctx.log(`object failover (${label}) ${i + 1}/${iters}: ${ms.toFixed(0)} ms`);
    await Promise.all([exited(victim.sidecar.child), exited(victim.app.child)]);
    fx.hosts[idx] = await ctx.env.startHost(fx.cls, fx.env);
  }
  return out;
}

export const failover: Scenario = {
  name: 'failover',
  title: 'Failover after kill -9: owner host vs JetStream stream leader',
  async run(ctx: Ctx) {
    const objectMs = await objectFailovers(ctx, await ctx.objects(), ctx.p.failoverIters, 'default lease TTL');
    // The same with a 2 s host lease: failover time follows the lease TTL (not in smoke mode: same code, 4 more processes).
    let shortMs: number[] | undefined;
    if (ctx.mode !== 'smoke') {
      const short = await startObjectsFixture(ctx.env, 'bench-fo', 3, { CASTELLAN_LEASE_TTL: '2s' });
      try {
        shortMs = await objectFailovers(ctx, short, ctx.p.failoverIters, 'lease TTL 2 s');
      } finally {
        await ctx.env.stopHosts(short.hosts);
        await ctx.env.stop(short.client);
      }
    }

    const nc = await ctx.nc();
    const stream = await rawStream(nc, 'BENCH_FAILOVER');
    const jsMs: number[] = [];
    const cluster = ctx.env.nats.cluster;
    try {
      for (let i = 0; i < ctx.p.failoverIters; i++) {
        await stream.js.publish(`${stream.subject}.x`, 'before');
        const leader = await stream.leader();
        const node = cluster.nodes.find((n) => n.name === leader);
        if (node === undefined) throw new Error(`stream leader ${String(leader)} is not a known node`);
        const killedAt = performance.now();
        await cluster.kill(node.index);
        for (;;) {
          if (performance.now() - killedAt > 60_000) throw new Error('JetStream did not accept a publish within 60 s of its leader kill -9');
          const ok = await stream.js.publish(`${stream.subject}.x`, 'after', { timeout: 500 }).then(
            () => true,
            () => false,
          );
          if (ok) break;
          await sleep(5);
        }
        const ms = performance.now() - killedAt;
        jsMs.push(ms);
        ctx.log(`JetStream leader failover ${i + 1}/${ctx.p.failoverIters}: ${ms.toFixed(0)} ms`);
        await cluster.restart(node.index, 60_000);
      }
    } finally {
      await stream.remove();
    }
    const baseline = 'JetStream R3 leader kill -9 → first acked publish';
    const target = { text: 'p99 ≤ 2 s', met: (r: { p99?: number }) => (r.p99 ?? Number.POSITIVE_INFINITY) <= 2_000 };
    const notes = `${ctx.p.failoverIters} repetitions: p99 is their maximum`;
    return [
      latencyResult('failover', 'object failover: owner kill -9 → first successful call (default lease TTL 1 s)', objectMs, baseline, jsMs, { target, notes }),
      ...(shortMs === undefined
        ? []
        : [latencyResult('failover', 'object failover: owner kill -9 → first successful call (lease TTL 2 s)', shortMs, baseline, jsMs, { notes })]),
    ];
  },
};
