/**
 * Scenario 8 — memory. Idle: the resident memory (VmRSS) of an object-host
 * sidecar as the image runs it (compiled, bundled JavaScript, production dependencies,
 * the image's Node options: bench/lib/image-app.ts) against an idle Node
 * process of the same binary (issue 14: ≤ 80 MB); the sidecar from the
 * sources and a Node process with a NATS connection and an HTTP client
 * (bench/apps/nats-responder.ts) as extras. Loaded: a sidecar (from the
 * sources) holding N active objects (a class with a single host, so every
 * object lands on it) against itself idle. What an active idle object
 * costs (issue 19: ≤ 4 KB) is measured exactly: the sidecar's live heap after
 * a full GC (over its inspector, bench/lib/inspector.ts) with the N objects
 * active and idle — called last more than the host's replay window ago, so
 * their replayable replies are gone — less the same before, over N.
 */
import { freePort, sleep } from '../../common/net.ts';
import { nodeOptions } from '../lib/env.ts';
import { liveHeapBytes } from '../lib/inspector.ts';
import { imageAppTree } from '../lib/image-app.ts';
import { closedLoop } from '../lib/load.ts';
import { call } from '../lib/objects.ts';
import { metricSum } from '../lib/metrics.ts';
import { rssBytes } from '../lib/procfs.ts';
import { assertHealthy, valueResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';

const MB = 1024 * 1024;
/** The object host's replay window (sidecar/objects/mod.ts: at least 60 s), plus two sweeps. */
const REPLAY_WINDOW_MS = 62_000;
/** V8 heap in use, from the sidecar's default Node metrics (prom-client). */
const HEAP = 'castellan_sidecar_nodejs_heap_size_used_bytes';

/** RSS after things settle: the median of a few readings a short while apart. */
async function settledRss(pid: number, readings: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < readings; i++) {
    await sleep(300);
    xs.push(rssBytes(pid));
  }
  return xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
}

export const memory: Scenario = {
  name: 'memory',
  title: 'Sidecar memory idle and with many active objects',
  async run(ctx: Ctx) {
    const fx = await ctx.objects();
    const { responder, app: rApp } = await ctx.env.startResponder('bench.rr.idle');
    ctx.log('building the image app tree (cached while the sources are unchanged)');
    const imageHost = await ctx.env.startImageHost('bench-mem-image', imageAppTree());
    const bareNode = ctx.env.startIdleNode();
    const inspectPort = await freePort();
    const host = await ctx.env.startHost('bench-mem', { ...nodeOptions(`--inspect=127.0.0.1:${inspectPort}`), CASTELLAN_IDLE_TIMEOUT: '10m' });
    try {
      const readings = ctx.mode === 'smoke' ? 2 : 6;
      await sleep(ctx.mode === 'smoke' ? 200 : 2_000);
      const heapIdle = await metricSum(host.sidecar.url, HEAP);
      const liveIdle = await liveHeapBytes(inspectPort);
      const [floor, idle, clientIdle, imageIdle, nodeIdle] = await Promise.all([
        settledRss(responder.pid, readings),
        settledRss(host.sidecar.pid, readings),
        settledRss(fx.client.pid, readings),
        settledRss(imageHost.sidecar.pid, readings),
        settledRss(bareNode.pid, readings),
      ]);
      await ctx.env.stopHosts([imageHost]);
      const n = ctx.p.memObjects;
      ctx.log(`activating ${n} objects on one host`);
      const t0 = performance.now();
      const load = await closedLoop((i) => call(fx.client.url, 'bench-mem', `mem-${i}`), { concurrency: 64, count: n });
      const activationSeconds = (performance.now() - t0) / 1000;
      assertHealthy('activating objects', load);
      const loaded = await settledRss(host.sidecar.pid, readings);
      const heapLoaded = await metricSum(host.sidecar.url, HEAP);
      // Idle: past the host's replay window (each request's reply is kept 60 s for de-duplication), so what
      // is left is what an active object costs while nobody calls it.
      if (ctx.mode !== 'smoke') {
        ctx.log(`waiting ${REPLAY_WINDOW_MS / 1000} s: the objects stay active, their replayable replies expire`);
        await sleep(REPLAY_WINDOW_MS);
      }
      const liveLoaded = await liveHeapBytes(inspectPort);
      const active = await metricSum(host.sidecar.url, 'castellan_object_active');
      if (active < n) throw new Error(`only ${active} of ${n} objects are active on the host; the per-object heap would be wrong`);
      return [
        valueResult('memory', 'object-host sidecar RSS, idle, as in the image', 'MB', imageIdle / MB, 'idle Node process (same binary)', nodeIdle / MB, {
          target: { text: '≤ 80 MB', met: (r) => r.value <= 80 },
          extra: {
            sourceSidecarRssMB: Math.round((idle / MB) * 10) / 10,
            nodeWithNatsConnectionRssMB: Math.round((floor / MB) * 10) / 10,
            clientSidecarRssMBAfterEarlierScenarios: Math.round((clientIdle / MB) * 10) / 10,
          },
          notes: 'the image sidecar: compiled and bundled JS (local/image/bundle.ts), production dependencies, NODE_ENV=production, the image\'s NODE_OPTIONS and MALLOC_ARENA_MAX; the source sidecar runs with type stripping and --inspect',
        }),
        valueResult('memory', `object-host sidecar RSS (from the sources), ${n} active objects`, 'MB', loaded / MB, 'same sidecar idle', idle / MB, {
          extra: {
            rssBytesPerObject: Math.round((loaded - idle) / n),
            heapUsedMBIdle: Math.round((heapIdle / MB) * 10) / 10,
            heapUsedMBLoaded: Math.round((heapLoaded / MB) * 10) / 10,
            heapBytesPerObject: Math.round((heapLoaded - heapIdle) / n),
            activationsPerSecond: Math.round(load.ops / activationSeconds),
          },
        }),
        valueResult('memory', `live heap per active idle object (after GC, ${n} objects)`, 'bytes', (liveLoaded - liveIdle) / n, 'the budget (issue 19; a fixed number, not measured)', 4096, {
          target: { text: '≤ 4 KB', met: (r) => r.value <= 4096 },
          extra: { liveHeapMBIdle: Math.round((liveIdle / MB) * 10) / 10, liveHeapMBLoaded: Math.round((liveLoaded / MB) * 10) / 10 },
        }),
      ];
    } finally {
      await ctx.env.stopHosts([host, imageHost]);
      await ctx.env.stop(responder, rApp, bareNode);
    }
  },
};
