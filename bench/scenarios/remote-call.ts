/**
 * Scenario 1 — remote object call: bench → client sidecar → NATS → owner's
 * sidecar → app, against the floor it is built on: a raw NATS request/reply
 * to a responder process that makes one local HTTP call to the same kind of
 * app (bench/apps/nats-responder.ts). Latency at 1 in flight; throughput at
 * `concurrency` in flight over 64 objects.
 */
import { compare, type CpuParts } from '../lib/load.ts';
import { call } from '../lib/objects.ts';
import { assertHealthy, latencyResult, throughputResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { waitFor } from '../../common/net.ts';
import { totalCpuSeconds } from '../lib/procfs.ts';
import { round } from '../lib/stats.ts';

const SUBJECT = 'bench.rr.remote';

export const remoteCall: Scenario = {
  name: 'remote-call',
  title: 'Remote object call vs raw NATS request/reply + one HTTP hop',
  async run(ctx: Ctx) {
    const fx = await ctx.objects();
    const nc = await ctx.nc();
    const { responder, app } = await ctx.env.startResponder(SUBJECT);
    try {
      await waitFor('baseline responder', async () => ((await nc.request(SUBJECT, 'probe', { timeout: 1_000 })).data.length > 0 ? true : undefined), { timeoutMs: 30_000 });
      const ids = Array.from({ length: 64 }, (_, i) => `remote-${i}`);
      ctx.log('activating 64 objects');
      await Promise.all(ids.map((id) => call(fx.client.url, fx.cls, id)));
      const subject = (i: number) => call(fx.client.url, fx.cls, ids[i % ids.length] as string);
      const baseline = async (i: number) => {
        const m = await nc.request(SUBJECT, ids[i % ids.length] as string, { timeout: 30_000 });
        if (m.data.length === 0) throw new Error('empty baseline reply');
      };
      const { p } = ctx;
      ctx.log(`latency: ${p.latencyCount} sequential calls each`);
      const lat = await compare((i) => subject(i * 0), (i) => baseline(i * 0), { concurrency: 1, count: p.latencyCount, rounds: p.rounds, warmup: 20 });
      assertHealthy('remote call latency', lat.subject);
      assertHealthy('baseline latency', lat.baseline);
      ctx.log(`throughput: ${p.concurrency} in flight for ${p.throughputMs} ms each`);
      // CPU of everything serving each side (the bench process itself excluded): sidecars + apps + NATS vs responder + app + NATS.
      const natsPids = () => ctx.env.nats.cluster.nodes.flatMap((n) => (n.process?.pid === undefined ? [] : [n.process.pid]));
      const cpu = {
        subject: () => ({
          clientSidecar: totalCpuSeconds([fx.client.pid]),
          hostSidecars: totalCpuSeconds(fx.hosts.map((h) => h.sidecar.pid)),
          apps: totalCpuSeconds(fx.hosts.map((h) => h.app.pid)),
          nats: totalCpuSeconds(natsPids()),
        }),
        baseline: () => ({ responder: totalCpuSeconds([responder.pid]), apps: totalCpuSeconds([app.pid]), nats: totalCpuSeconds(natsPids()) }),
      };
      const tp = await compare(subject, baseline, { concurrency: p.concurrency, durationMs: p.throughputMs, rounds: p.rounds, cpu });
      assertHealthy('remote call throughput', tp.subject);
      assertHealthy('baseline throughput', tp.baseline);
      const cpuSubject = perCall(tp.cpuSeconds.subject, tp.subject.ops, 'cpuMsPerCall');
      const cpuBaseline = perCall(tp.cpuSeconds.baseline, tp.baseline.ops, 'baselineCpuMsPerCall');
      return [
        latencyResult('remote-call', 'remote call latency', lat.subject.latencies, 'NATS request/reply + 1 HTTP hop', lat.baseline.latencies, {
          errors: lat.subject.errors,
          target: { text: 'p50 ≤ 1.5× baseline', met: (r) => r.ratio <= 1.5 },
        }),
        throughputResult('remote-call', `remote call throughput (${p.concurrency} in flight, 64 objects)`, tp.subject, 'NATS request/reply + 1 HTTP hop', tp.baseline, {
          extra: { ...cpuSubject, ...cpuBaseline },
          target: {
            text: '≥ 0.7× baseline, CPU per call ≤ 1.5× the baseline’s',
            met: (r) => r.ratio >= 0.7 && (cpuSubject.cpuMsPerCall ?? Infinity) <= 1.5 * (cpuBaseline.baselineCpuMsPerCall ?? 0),
          },
          notes: 'CPU per call: every serving process (sidecars, apps, NATS servers; not the bench client)',
        }),
      ];
    } finally {
      await ctx.env.stop(responder, app);
    }
  },
};

/** CPU milliseconds per call, in total and by part: `{prefix: total, prefix.part: …}`. */
function perCall(parts: CpuParts, ops: number, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of Object.entries(parts)) {
    out[`${prefix}.${k}`] = round((v * 1000) / Math.max(1, ops), 3);
    total += v;
  }
  out[prefix] = round((total * 1000) / Math.max(1, ops), 3);
  return out;
}
