/**
 * Scenario `sqs` — the SQS-compatible API (SPEC §2.5) through the official
 * @aws-sdk/client-sqs v3 (JSON protocol): SendMessage + ReceiveMessage +
 * DeleteMessage cycles against the native queue API's send + receive + delete
 * on the same queue (3 queue hosts, R=2) through the same client sidecar, in
 * interleaved rounds. Target: the SDK path at ≥ 0.8× the native one.
 * Extras: CPU milliseconds per message on each side of each path — the
 * driving process (this one: the SDK, or the plain HTTP calls of the native
 * cycle), the sidecars (client and queue hosts), the NATS servers — so that
 * a gap shows whether it is the SDK's own work or the sidecar's.
 */
import { DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SidecarProc } from '../../test/harness/sidecars.ts';
import { closedLoop, type LoadResult } from '../lib/load.ts';
import { QueueClient, requireQueues } from '../lib/queues.ts';
import { totalCpuSeconds } from '../lib/procfs.ts';
import { assertHealthy, throughputResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';

const CONCURRENCY = 8;

function merge(a: LoadResult | undefined, b: LoadResult): LoadResult {
  if (a === undefined) return b;
  return { latencies: a.latencies.concat(b.latencies), ops: a.ops + b.ops, errors: a.errors + b.errors, elapsedMs: a.elapsedMs + b.elapsedMs };
}

/** CPU ms per message of each side of each path (rounded to 0.01 ms). */
function perMessage(cpu: Record<'native' | 'sdk', { driver: number; sidecars: number; nats: number }>, sdkOps: number, nativeOps: number): Record<string, number> {
  const r = (x: number, n: number) => Math.round((x / Math.max(1, n)) * 100) / 100;
  return {
    sdkDriverCpuMsPerMsg: r(cpu.sdk.driver, sdkOps),
    sdkSidecarsCpuMsPerMsg: r(cpu.sdk.sidecars, sdkOps),
    sdkNatsCpuMsPerMsg: r(cpu.sdk.nats, sdkOps),
    nativeDriverCpuMsPerMsg: r(cpu.native.driver, nativeOps),
    nativeSidecarsCpuMsPerMsg: r(cpu.native.sidecars, nativeOps),
    nativeNatsCpuMsPerMsg: r(cpu.native.nats, nativeOps),
  };
}

export const sqs: Scenario = {
  name: 'sqs',
  title: 'SQS SDK send+receive+delete vs the native queue API',
  async run(ctx: Ctx) {
    const fx = await ctx.objects();
    await requireQueues(fx.client.url);
    const env = { CASTELLAN_QUEUE_HOSTS: '3', CASTELLAN_QUEUE_REPLICA_COUNT: '2', CASTELLAN_VISIBILITY_TIMEOUT: '30s' };
    const hosts: SidecarProc[] = await Promise.all([0, 1, 2].map((i) => ctx.env.startQueueHost('bsqs', i, env)));
    const client = new SQSClient({ endpoint: fx.client.url, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'unchecked' } });
    try {
      const q = new QueueClient(fx.client.url, 'bsqs');
      await q.waitReady(120_000, 2);
      const QueueUrl = `${fx.client.url}/sqs/default/bsqs`;
      const native = async (i: number) => {
        await q.send(`n-${i}`, 2);
        const m = await q.receiveOne(30_000);
        await q.delete(m.receiptHandle);
      };
      const viaSdk = async (i: number) => {
        await client.send(new SendMessageCommand({ QueueUrl, MessageBody: `s-${i}` }));
        for (;;) {
          const r = await client.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 1, VisibilityTimeout: 30 }));
          const m = r.Messages?.[0];
          if (m !== undefined) {
            await client.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
            return;
          }
        }
      };
      const rounds = Math.max(1, ctx.p.rounds);
      let s: LoadResult | undefined;
      let b: LoadResult | undefined;
      const sidecarPids = [fx.client.pid, ...hosts.map((h) => h.pid)];
      const natsPids = ctx.env.nats.cluster.nodes.map((n) => n.process?.pid).filter((p): p is number => p !== undefined);
      const cpu = { native: { driver: 0, sidecars: 0, nats: 0 }, sdk: { driver: 0, sidecars: 0, nats: 0 } };
      const measured = async (side: keyof typeof cpu, fn: (i: number) => Promise<void>): Promise<LoadResult> => {
        const d0 = process.cpuUsage();
        const s0 = totalCpuSeconds(sidecarPids);
        const n0 = totalCpuSeconds(natsPids);
        const r = await closedLoop(fn, { concurrency: CONCURRENCY, durationMs: ctx.p.throughputMs / rounds });
        const d = process.cpuUsage(d0);
        cpu[side].driver += (d.user + d.system) / 1000;
        cpu[side].sidecars += (totalCpuSeconds(sidecarPids) - s0) * 1000;
        cpu[side].nats += (totalCpuSeconds(natsPids) - n0) * 1000;
        return r;
      };
      ctx.log(`${rounds} rounds of native vs SDK, ${CONCURRENCY} in flight, ${ctx.p.throughputMs} ms each side`);
      for (let k = 0; k < rounds; k++) {
        b = merge(b, await measured('native', native));
        s = merge(s, await measured('sdk', viaSdk));
      }
      assertHealthy('SQS SDK cycle', s as LoadResult);
      assertHealthy('native queue cycle', b as LoadResult);
      return [
        throughputResult('sqs', `SQS SDK send+receive+delete, R=2, 3 hosts (${CONCURRENCY} in flight)`, s as LoadResult, `native queue API send+receive+delete, same queue (${CONCURRENCY} in flight)`, b as LoadResult, {
          unit: 'msg/s',
          target: { text: '≥ 0.8× native', met: (x: { ratio: number }) => x.ratio >= 0.8 },
          extra: perMessage(cpu, (s as LoadResult).ops, (b as LoadResult).ops),
        }),
      ];
    } finally {
      client.destroy();
      await ctx.env.stop(...hosts);
    }
  },
};
