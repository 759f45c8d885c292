/**
 * Scenario 5 — activation time of an object holding N keys: the first call
 * after the object was deactivated (idle timeout), whose handler reads one
 * key through the storage API, so it covers claim + whatever storage does on
 * activation. Baseline: the same for an object with no keys, in the same run.
 * A dedicated class `bench-idle` with one host and a 1 s idle timeout; the
 * host's `castellan_object_active` gauge says when the object is gone.
 *
 * For the largest object (100,000 keys outside smoke mode; issue 12 item 8)
 * also: activation + first list (which waits for the whole key index), the
 * sidecar's event-loop max delay over that (prom-client's
 * `nodejs_eventloop_lag_max_seconds`, reset by each scrape), the sidecar's
 * live heap growth per key with the object active, measured exactly after a
 * full GC over its inspector (bench/lib/inspector.ts; its heap and RSS growth,
 * which count garbage, as extras), and the key index's own heap per key
 * measured exactly in a `--expose-gc` child (bench/apps/index-memory.ts).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort, sleep, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { nodeOptions, type Host } from '../lib/env.ts';
import { http } from '../lib/http.ts';
import { metricSum } from '../lib/metrics.ts';
import { objectUrl } from '../lib/objects.ts';
import { rssBytes } from '../lib/procfs.ts';
import { latencyResult, valueResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { fill, holdTurn, requireStorage, storageBase } from '../lib/storage.ts';
import { liveHeapBytes } from '../lib/inspector.ts';

/** Hold turns that write many keys must not hit the request or turn timeout. */
export const LONG_TURNS = { CASTELLAN_REQUEST_TIMEOUT: '900s', CASTELLAN_TURN_TIMEOUT: '900s' };
const LAG_MAX = 'castellan_sidecar_nodejs_eventloop_lag_max_seconds';
const HEAP = 'castellan_sidecar_nodejs_heap_size_used_bytes';

/** Median of a few readings a short while apart (after things settle). */
async function settled(read: () => Promise<number> | number, readings = 5): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < readings; i++) {
    await sleep(300);
    xs.push(await read());
  }
  return xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Heap, RSS and live heap (after GC, over the inspector) of the host's sidecar with object `id` active (a turn of it held open, its key index loaded). */
async function memoryWithActive(host: Host, id: string, inspectPort: number): Promise<{ heap: number; rss: number; live: number }> {
  const end = await holdTurn(host, id);
  try {
    // A one-key list waits for the whole key index: it is loaded when measured.
    const l = await http(`${storageBase(host.sidecar.url, host.cls, id)}/keys?limit=1`, { timeoutMs: 60_000 });
    if (l.status !== 200) throw new Error(`listing ${id} failed: ${l.status} ${l.body.toString('utf8').slice(0, 200)}`);
    const heap = await settled(() => metricSum(host.sidecar.url, HEAP));
    const rss = await settled(() => rssBytes(host.sidecar.pid));
    return { heap, rss, live: await liveHeapBytes(inspectPort) };
  } finally {
    await end();
  }
}

const CLS = 'bench-idle';

const activeObjects = (sidecarUrl: string) => metricSum(sidecarUrl, 'castellan_object_active');

export const activation: Scenario = {
  name: 'activation',
  title: 'Activation time of an object holding many keys',
  async run(ctx: Ctx) {
    // Long request and turn limits: filling 100,000 keys holds one turn for minutes on a loaded machine.
    const inspectPort = await freePort();
    const host = await ctx.env.startHost(CLS, { CASTELLAN_IDLE_TIMEOUT: '1s', ...LONG_TURNS, ...nodeOptions(`--inspect=127.0.0.1:${inspectPort}`) });
    try {
      const url = host.sidecar.url;
      // Storage is served only during a turn of the object: hold one open while writing from here.
      const probeTurn = await holdTurn(host, 'probe');
      try {
        await requireStorage(url, CLS, 'probe');
      } finally {
        await probeTurn();
      }
      let sizes = [0, ...ctx.p.activationKeys];
      for (const n of sizes) {
        ctx.log(`writing ${n} keys`);
        const end = await holdTurn(host, `act-${n}`);
        try {
          await fill(storageBase(url, CLS, `act-${n}`), n);
        } finally {
          await end();
        }
      }
      const largest = Math.max(...sizes);
      const times = new Map<number, number[]>(sizes.map((n) => [n, []]));
      /** For the empty and the largest object: activation + first list, and the event-loop max delay over it. */
      const listTimes = new Map<number, number[]>([
        [0, []],
        [largest, []],
      ]);
      const lagMs: number[] = [];
      for (let it = 0; it < ctx.p.activationIters; it++) {
        for (const n of sizes) {
          await waitFor('objects to deactivate', async () => ((await activeObjects(url)) === 0 ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
          await sleep(100);
          await metricSum(url, LAG_MAX); // resets the delay histogram
          const t0 = performance.now();
          const r = await http(objectUrl(url, CLS, `act-${n}`, '/storage-probe?key=k0'), { timeoutMs: 60_000 });
          const ms = performance.now() - t0;
          if (listTimes.has(n) && r.status === 200) {
            // Deactivated again meanwhile? Then this is a second activation, not a list on the first one.
            if (it === 0) ctx.log(`first read of ${n} keys: ${ms.toFixed(0)} ms`);
            const l = await http(objectUrl(url, CLS, `act-${n}`, '/storage-probe?list=10'), { timeoutMs: 60_000 });
            const listMs = performance.now() - t0;
            const lag = (await metricSum(url, LAG_MAX)) * 1000;
            const seenList = l.status === 200 ? (JSON.parse(l.body.toString('utf8')) as { status: number }) : undefined;
            if (seenList?.status !== 200) ctx.fail(`listing an object with ${n} keys failed: ${l.status} ${l.body.toString('utf8').slice(0, 300)}`);
            else {
              listTimes.get(n)!.push(listMs);
              if (n === largest) lagMs.push(lag);
            }
          }
          const seen = r.status === 200 ? (JSON.parse(r.body.toString('utf8')) as { status: number }) : undefined;
          const problem =
            r.status !== 200 ? `${r.status} ${r.body.toString('utf8').slice(0, 300)}` : seen?.status !== (n === 0 ? 404 : 200) ? `reading k0 gave ${seen?.status}` : undefined;
          if (problem !== undefined) {
            if (n === 0) throw new Error(`activation of an empty object failed: ${problem}`);
            // One size failing (say, a storage limit) must not hide the others' numbers.
            ctx.fail(`activation of an object with ${n} keys failed: ${problem}`);
            sizes = sizes.filter((x) => x !== n);
            times.delete(n);
            continue;
          }
          times.get(n)!.push(ms);
        }
      }
      const empty = times.get(0)!;
      ctx.log(`activation ms: ${[...times].map(([n, t]) => `${n} keys: ${t.map((x) => x.toFixed(0)).join('/')}`).join('; ')}`);
      const big = largest >= 100_000;
      const results = sizes.filter((n) => n > 0).map((n) =>
        latencyResult('activation', `activation + first storage read, ${n} keys`, times.get(n)!, 'same for an object with no keys', empty, n === largest && big ? { target: { text: '≤ 1 s and ≤ 20× empty', met: (r) => r.value <= 1000 && r.ratio <= 20 } } : {}),
      );
      if (!big || !sizes.includes(largest) || listTimes.get(largest)!.length === 0 || listTimes.get(0)!.length === 0) return results;
      // Memory with the largest object active vs the empty one active.
      const base = await memoryWithActive(host, 'act-0', inspectPort);
      const loaded = await memoryWithActive(host, `act-${largest}`, inspectPort);
      const exact = JSON.parse(
        execFileSync(process.execPath, ['--expose-gc', '--disable-warning=ExperimentalWarning', join(projectRoot, 'bench', 'apps', 'index-memory.ts'), String(largest)], { encoding: 'utf8' }),
      ) as { bytesPerKey: number };
      results.push(
        latencyResult('activation', `activation + first list (whole key index loaded), ${largest} keys`, listTimes.get(largest)!, 'same for an object with no keys', listTimes.get(0)!, {
          extra: {
            eventLoopMaxDelayMs: Math.round(Math.max(...lagMs)),
            sidecarHeapBytesPerKey: Math.round((loaded.heap - base.heap) / largest),
            sidecarRssBytesPerKey: Math.round((loaded.rss - base.rss) / largest),
            indexHeapBytesPerKeyAfterGc: exact.bytesPerKey,
          },
        }),
        valueResult(
          'activation',
          `sidecar live heap per key, ${largest}-key object active (after GC, over the empty object active)`,
          'B',
          (loaded.live - base.live) / largest,
          'the key index alone, exact after GC (bench/apps/index-memory.ts)',
          exact.bytesPerKey,
          {
            target: { text: '≤ 200 B per key beyond values read', met: (r) => r.value <= 200 },
            extra: {
              sidecarRssBytesPerKey: Math.round((loaded.rss - base.rss) / largest),
              sidecarHeapBytesPerKeyWithGarbage: Math.round((loaded.heap - base.heap) / largest),
            },
          },
        ),
      );
      return results;
    } finally {
      await ctx.env.stopHosts([host]);
    }
  },
};
