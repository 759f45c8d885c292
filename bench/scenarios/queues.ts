/**
 * Scenario 6 — replicated queues: send + receive + delete cycles through a
 * client sidecar with a queue of 3 queue hosts, at replicas 1, 2 and 3,
 * against one JetStream R3 work-queue stream driven by the same Node client
 * (publish + pull one + double-acked ack). CPU seconds per message from
 * /proc of the sidecar processes (client + queue hosts) and of the NATS
 * servers; R=2 again at 64 in flight; and the same at R=2 with 5 queue
 * hosts, to show whether CPU per message grows with the host count.
 * Scenario 7 (queues) — kill -9 one queue host holding R=2 messages and time
 * draining them all, against the same drain without a failure; every message
 * must come back within lease TTL + visibility timeout of the no-failure drain.
 */
import { terminate } from '../../common/children.ts';
import { sleep } from '../../common/net.ts';
import type { SidecarProc } from '../../test/harness/sidecars.ts';
import { rawStream } from '../lib/jetstream.ts';
import { closedLoop, type LoadResult } from '../lib/load.ts';
import { totalCpuSeconds } from '../lib/procfs.ts';
import { QueueClient, requireQueues } from '../lib/queues.ts';
import { assertHealthy, throughputResult, valueResult, type BenchResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { round } from '../lib/stats.ts';

const VISIBILITY_S = 5;
/** The sidecar's default host lease TTL (sidecar/config.ts), which these queue hosts run with. */
const LEASE_TTL_MS = 1_000;

/** Requests the queue hosts answered so far, by `op/result` (castellan_queue_host_requests_total). */
async function hostRequests(hosts: SidecarProc[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const h of hosts) {
    const text = await (await fetch(`${h.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    for (const m of text.matchAll(/^castellan_queue_host_requests_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      const key = `${labels.op}/${labels.result}`;
      out.set(key, (out.get(key) ?? 0) + Number(m[2]));
    }
  }
  return out;
}

/** Host requests per message between two readings, e.g. `{ "receive/empty": 0.8, ... }`. */
function perMessage(before: Map<string, number>, after: Map<string, number>, messages: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = round(d / Math.max(1, messages), 3);
  }
  return out;
}

function prefixed(prefix: string, r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [`${prefix}${k}`, v]));
}

async function startQueue(ctx: Ctx, name: string, hosts: number): Promise<SidecarProc[]> {
  const env = { CASTELLAN_QUEUE_HOSTS: String(hosts), CASTELLAN_QUEUE_REPLICA_COUNT: '2', CASTELLAN_VISIBILITY_TIMEOUT: '30s' };
  return Promise.all(Array.from({ length: hosts }, (_, i) => ctx.env.startQueueHost(name, i, env)));
}

export const queues: Scenario = {
  name: 'queues',
  title: 'Replicated queue send+receive+delete vs JetStream R3 work queue',
  async run(ctx: Ctx) {
    const fx = await ctx.objects();
    await requireQueues(fx.client.url);
    const nc = await ctx.nc();
    const natsPids = () => ctx.env.nats.cluster.nodes.map((n) => n.process?.pid).filter((p): p is number => p !== undefined);
    const wq = await rawStream(nc, 'BENCH_WQ', { workQueue: true });
    const consumer = await wq.js.consumers.get(wq.name, 'bench');
    const results: BenchResult[] = [];
    const hosts = await startQueue(ctx, 'bq', 3);
    let hosts5: SidecarProc[] = [];
    try {
      const q = new QueueClient(fx.client.url, 'bq');
      await q.waitReady(120_000, 3);
      const baselineOp = async (i: number) => {
        await wq.js.publish(`${wq.subject}.m`, `m-${i}`);
        const m = await consumer.next({ expires: 5_000 });
        if (m === null) throw new Error('work queue: no message within 5 s');
        await m.ackAck();
      };
      const { p } = ctx;
      /**
       * Runs interleaved rounds of the work-queue baseline and of Castellan at
       * R, and measures CPU: the sidecars' and the NATS servers' CPU seconds
       * over each run, minus what they burn idle (heartbeats, views) over the
       * same time, per message; the raw figure is kept too.
       */
      const measure = async (client: QueueClient, queueHosts: SidecarProc[], r: number, windowMs: number, concurrency = 8) => {
        const sidecarPids = [fx.client.pid, ...queueHosts.map((h) => h.pid)];
        const idleMs = Math.min(2_000, windowMs / 2);
        const i0 = totalCpuSeconds(sidecarPids);
        const it0 = performance.now();
        await sleep(idleMs);
        const idleRate = (totalCpuSeconds(sidecarPids) - i0) / ((performance.now() - it0) / 1000);
        const cpu = { s: 0, sn: 0, bn: 0 };
        const cycle = async (i: number) => {
          await client.send(`m-${i}`, r);
          const m = await client.receiveOne(30_000);
          await client.delete(m.receiptHandle);
        };
        const rounds = Math.max(1, p.rounds);
        const requests0 = await hostRequests(queueHosts);
        let s: LoadResult | undefined;
        let b: LoadResult | undefined;
        for (let k = 0; k < rounds; k++) {
          const n0 = totalCpuSeconds(natsPids());
          const one = await closedLoop(baselineOp, { concurrency, durationMs: windowMs / rounds });
          cpu.bn += totalCpuSeconds(natsPids()) - n0;
          const c0 = totalCpuSeconds(sidecarPids);
          const m0 = totalCpuSeconds(natsPids());
          const two = await closedLoop(cycle, { concurrency, durationMs: windowMs / rounds });
          cpu.s += totalCpuSeconds(sidecarPids) - c0;
          cpu.sn += totalCpuSeconds(natsPids()) - m0;
          b = b === undefined ? one : mergeRuns(b, one);
          s = s === undefined ? two : mergeRuns(s, two);
        }
        assertHealthy(`queue R=${r}`, s!);
        assertHealthy('work-queue baseline', b!);
        const net = Math.max(0, cpu.s - idleRate * (s!.elapsedMs / 1000));
        const hostRequestsPerMessage = perMessage(requests0, await hostRequests(queueHosts), s!.ops);
        return { s: s!, b: b!, hostRequestsPerMessage, cpu: { sidecar: net / s!.ops, sidecarRaw: cpu.s / s!.ops, idleRate, nats: cpu.sn / s!.ops, baselineNats: cpu.bn / b!.ops } };
      };
      const cpuAt: Record<number, { net: number; raw: number }> = {};
      for (const r of [1, 2, 3]) {
        ctx.log(`R=${r}: 8 in flight for ${p.throughputMs} ms`);
        const m = await measure(q, hosts, r, p.throughputMs);
        cpuAt[r] = { net: m.cpu.sidecar, raw: m.cpu.sidecarRaw };
        results.push(
          throughputResult('queues', `queue send+receive+delete, R=${r}, 3 hosts (8 in flight)`, m.s, 'JetStream R3 work queue: publish+next+ack (8 in flight)', m.b, {
            unit: 'msg/s',
            ...(r === 2 ? { target: { text: '≥ 0.8× baseline', met: (x: { ratio: number }) => x.ratio >= 0.8 } } : {}),
            extra: {
              sidecarCpuSecondsPerMessage: round(m.cpu.sidecar, 6),
              sidecarCpuSecondsPerMessageRaw: round(m.cpu.sidecarRaw, 6),
              sidecarIdleCpuSecondsPerSecond: round(m.cpu.idleRate, 4),
              natsCpuSecondsPerMessage: round(m.cpu.nats, 6),
              baselineNatsCpuSecondsPerMessage: round(m.cpu.baselineNats, 6),
              ...prefixed('hostRequestsPerMessage.', m.hostRequestsPerMessage),
            },
          }),
        );
      }

      {
        ctx.log(`R=2: 64 in flight for ${p.throughputMs} ms`);
        const m = await measure(q, hosts, 2, p.throughputMs, 64);
        results.push(
          throughputResult('queues', 'queue send+receive+delete, R=2, 3 hosts (64 in flight)', m.s, 'JetStream R3 work queue: publish+next+ack (64 in flight)', m.b, {
            unit: 'msg/s',
            target: { text: '≥ 0.8× baseline', met: (x: { ratio: number }) => x.ratio >= 0.8 },
            extra: { sidecarCpuSecondsPerMessage: round(m.cpu.sidecar, 6), natsCpuSecondsPerMessage: round(m.cpu.nats, 6) },
          }),
        );
      }

      if (ctx.mode === 'smoke') {
        // Five more processes cost the smoke test more time than the check is worth; `measure` ran above.
        return [...results, await hostKill(ctx, q, hosts)];
      }
      ctx.log('R=2 on 5 queue hosts (CPU per message vs host count)');
      hosts5 = await startQueue(ctx, 'bq5', 5);
      const q5 = new QueueClient(fx.client.url, 'bq5');
      await q5.waitReady();
      const m5 = await measure(q5, hosts5, 2, p.throughputMs);
      results.push(
        valueResult('queues', 'queue sidecar CPU per message (net of idle), R=2, 5 hosts', 'ms CPU/msg', m5.cpu.sidecar * 1000, 'same with 3 hosts', cpuAt[2]!.net * 1000, {
          target: { text: 'not growing with host count (≤ 1.25×)', met: (x) => x.ratio <= 1.25 },
          extra: {
            throughput5Hosts: round((m5.s.ops * 1000) / m5.s.elapsedMs, 1),
            rawMsCpuPerMessage5Hosts: round(m5.cpu.sidecarRaw * 1000, 3),
            rawMsCpuPerMessage3Hosts: round(cpuAt[2]!.raw * 1000, 3),
            idleCpuSecondsPerSecond5Hosts: round(m5.cpu.idleRate, 4),
            ...prefixed('hostRequestsPerMessage5Hosts.', m5.hostRequestsPerMessage),
          },
        }),
      );
      await ctx.env.stop(...hosts5);
      hosts5 = [];

      results.push(await hostKill(ctx, q, hosts));
    } finally {
      await ctx.env.stop(...hosts, ...hosts5);
      await wq.remove();
    }
    return results;
  },
};

function mergeRuns(a: LoadResult, b: LoadResult): LoadResult {
  return { latencies: a.latencies.concat(b.latencies), ops: a.ops + b.ops, errors: a.errors + b.errors, elapsedMs: a.elapsedMs + b.elapsedMs };
}

/** Receives and deletes until every id in `ids` was seen; returns the time taken. */
async function drain(q: QueueClient, ids: Set<string>, deadlineMs: number): Promise<{ ms: number; missing: number }> {
  const t0 = performance.now();
  const left = new Set(ids);
  while (left.size > 0 && performance.now() - t0 < deadlineMs) {
    const ms = await q.receive(10, 1, VISIBILITY_S);
    await Promise.all(
      ms.map(async (m) => {
        left.delete(m.body);
        await q.delete(m.receiptHandle);
      }),
    );
  }
  return { ms: performance.now() - t0, missing: left.size };
}

async function hostKill(ctx: Ctx, q: QueueClient, hosts: SidecarProc[]): Promise<BenchResult> {
  const n = Math.max(10, Math.floor(ctx.p.queueMessages / 4));
  const sendAll = async (tag: string) => {
    const bodies = new Set<string>();
    for (let i = 0; i < n; i += 10) {
      await Promise.all(
        Array.from({ length: Math.min(10, n - i) }, async (_, j) => {
          const body = `${tag}-${i + j}`;
          await q.send(body, 2);
          bodies.add(body);
        }),
      );
    }
    return bodies;
  };
  ctx.log(`queue host kill: ${n} messages at R=2, drained without and with a kill -9`);
  const calm = await drain(q, await sendAll('calm'), 120_000);
  if (calm.missing > 0) throw new Error(`no-failure drain left ${calm.missing} of ${n} messages`);
  const bodies = await sendAll('kill');
  // The first receive makes some messages in-flight on every host, then one host dies.
  const victim = hosts[0]!;
  await terminate(victim.child, 'SIGKILL', 1_000);
  const killed = await drain(q, bodies, 120_000);
  const bound = calm.ms + LEASE_TTL_MS + VISIBILITY_S * 1000;
  return valueResult('queues', `queue drain of ${n} R=2 messages after kill -9 of a queue host`, 'ms', killed.ms, 'same drain, no failure', calm.ms, {
    target: { text: `all messages back within lease TTL + visibility (${LEASE_TTL_MS / 1000} s + ${VISIBILITY_S} s) of the no-failure drain`, met: (x) => killed.missing === 0 && x.value <= bound },
    extra: { missing: killed.missing, boundMs: Math.round(bound) },
    samples: { subject: [killed.ms], baseline: [calm.ms] },
    notes: 'one drain each (n = 1)',
  });
}
