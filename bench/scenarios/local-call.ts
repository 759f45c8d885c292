/**
 * Scenario 2 — local call: the object is owned by the host whose sidecar is
 * called (the app calling an object its own pod hosts), against calling the
 * app directly over HTTP. Latency at 1 in flight; throughput over 16 objects
 * owned by that host.
 */
import { http } from '../lib/http.ts';
import { compare } from '../lib/load.ts';
import { call, idsOwnedBy } from '../lib/objects.ts';
import { assertHealthy, latencyResult, throughputResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';

export const localCall: Scenario = {
  name: 'local-call',
  title: 'Local object call (owned by the called sidecar) vs direct HTTP to the app',
  async run(ctx: Ctx) {
    const fx = await ctx.objects();
    const host = fx.hosts[0]!;
    ctx.log(`finding 16 objects owned by ${host.name}`);
    const ids = await idsOwnedBy(host, 'local', 16);
    const appUrl = `http://127.0.0.1:${host.app.port}/hit`;
    const subject = (i: number) => call(host.sidecar.url, fx.cls, ids[i % ids.length] as string);
    const baseline = async (i: number) => {
      const r = await http(appUrl, { method: 'POST', headers: { 'castellan-id': ids[i % ids.length] as string, 'castellan-class': fx.cls } });
      if (r.status !== 200) throw new Error(`app answered ${r.status}`);
    };
    const { p } = ctx;
    const lat = await compare((i) => subject(i * 0), (i) => baseline(i * 0), { concurrency: 1, count: p.latencyCount, rounds: p.rounds, warmup: 20 });
    assertHealthy('local call latency', lat.subject);
    const tp = await compare(subject, baseline, { concurrency: p.concurrency, durationMs: p.throughputMs, rounds: p.rounds });
    assertHealthy('local call throughput', tp.subject);
    return [
      latencyResult('local-call', 'local call latency', lat.subject.latencies, 'direct HTTP to the app', lat.baseline.latencies, {
        errors: lat.subject.errors,
        target: { text: 'p50 ≤ 2× direct HTTP', met: (r) => r.ratio <= 2 },
      }),
      throughputResult('local-call', `local call throughput (${p.concurrency} in flight, 16 objects)`, tp.subject, 'direct HTTP to the app', tp.baseline),
    ];
  },
};
