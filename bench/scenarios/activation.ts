/**
 * Scenario 5 — activation time of an object holding N keys: the first call
 * after the object was deactivated (idle timeout), whose handler reads one
 * key through the storage API, so it covers claim + whatever storage does on
 * activation. Baseline: the same for an object with no keys, in the same run.
 * A dedicated class `bench-idle` with one host and a 1 s idle timeout; the
 * host's `castellan_object_active` gauge says when the object is gone.
 */
import { sleep, waitFor } from '../../common/net.ts';
import { http } from '../lib/http.ts';
import { metricSum } from '../lib/metrics.ts';
import { objectUrl } from '../lib/objects.ts';
import { latencyResult } from '../lib/result.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { fill, holdTurn, requireStorage, storageBase } from '../lib/storage.ts';

const CLS = 'bench-idle';

const activeObjects = (sidecarUrl: string) => metricSum(sidecarUrl, 'castellan_object_active');

export const activation: Scenario = {
  name: 'activation',
  title: 'Activation time of an object holding many keys',
  async run(ctx: Ctx) {
    const host = await ctx.env.startHost(CLS, { CASTELLAN_IDLE_TIMEOUT: '1s' });
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
      const times = new Map<number, number[]>(sizes.map((n) => [n, []]));
      for (let it = 0; it < ctx.p.activationIters; it++) {
        for (const n of sizes) {
          await waitFor('objects to deactivate', async () => ((await activeObjects(url)) === 0 ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
          await sleep(100);
          const t0 = performance.now();
          const r = await http(objectUrl(url, CLS, `act-${n}`, '/storage-probe?key=k0'), { timeoutMs: 60_000 });
          const ms = performance.now() - t0;
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
      return sizes
        .filter((n) => n > 0)
        .map((n) => latencyResult('activation', `activation + first storage read, ${n} keys`, times.get(n)!, 'same for an object with no keys', empty));
    } finally {
      await ctx.env.stopHosts([host]);
    }
  },
};
