/**
 * Scenario 5b — a large object on a sidecar with a small heap (issue 12
 * item 8): an object of N MiB of values (1 MiB each; full mode 1 GB, quick
 * 256 MiB, smoke 16 MiB) is written by one host of class `bench-large`,
 * which then stops; a second host, whose sidecar runs with
 * `--max-old-space-size=512`, activates it (first read of one key), lists a
 * page (bounded to 16 MiB of values) and reads a few keys. Measured: that
 * sidecar's RSS growth from idle to after those reads (baseline: the object's
 * size — the cost of holding its values, which activation must not pay), and
 * activation + first read against the same for an empty object on the same
 * host. Every value read is checked against what was written.
 */
import { sleep } from '../../common/net.ts';
import { http } from '../lib/http.ts';
import { objectUrl } from '../lib/objects.ts';
import { rssBytes } from '../lib/procfs.ts';
import { valueResult } from '../lib/result.ts';
import { LONG_TURNS } from './activation.ts';
import type { Ctx, Scenario } from '../lib/scenario.ts';
import { holdTurn, put, requireStorage, storageBase } from '../lib/storage.ts';

const CLS = 'bench-large';
const MiB = 1024 * 1024;

function value(i: number): Buffer {
  const b = Buffer.alloc(MiB);
  for (let j = 0; j < MiB; j += 4096) b.writeUInt32BE((i * 1_000_003 + j) >>> 0, j);
  return b;
}

const keyOf = (i: number) => `v${String(i).padStart(5, '0')}`;

async function settledRss(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(400);
    xs.push(rssBytes(pid));
  }
  return xs.sort((a, b) => a - b)[2]!;
}

export const largeObject: Scenario = {
  name: 'large-object',
  title: 'A large object activated on a sidecar with a 512 MB heap',
  async run(ctx: Ctx) {
    const mib = ctx.mode === 'full' ? 1024 : ctx.mode === 'quick' ? 256 : 16;
    const id = `large-${mib}`;
    const writer = await ctx.env.startHost(CLS, LONG_TURNS);
    try {
      ctx.log(`writing ${mib} MiB`);
      const t0 = performance.now();
      // In chunks of 32 MiB, each in its own held turn; a chunk whose turn was lost (a loaded machine can
      // let the host lease lapse) is written again — a PUT of the same value is idempotent.
      for (let from = 0; from < mib; from += 32) {
        for (let attempt = 1; ; attempt++) {
          try {
            const end = await holdTurn(writer, id);
            try {
              if (from === 0) await requireStorage(writer.sidecar.url, CLS, id);
              const base = storageBase(writer.sidecar.url, CLS, id);
              let next = from;
              const to = Math.min(mib, from + 32);
              await Promise.all(
                Array.from({ length: 8 }, async () => {
                  while (next < to) {
                    const i = next++;
                    await put(base, keyOf(i), value(i));
                  }
                }),
              );
            } finally {
              await end();
            }
            break;
          } catch (err) {
            if (attempt >= 4) throw err;
            ctx.log(`writing MiB ${from}… failed (${err instanceof Error ? err.message.slice(0, 120) : String(err)}); again`);
          }
        }
      }
      ctx.log(`wrote ${mib} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await ctx.env.stopHosts([writer]);
    }
    const reader = await ctx.env.startHost(CLS, { ...LONG_TURNS, NODE_OPTIONS: '--max-old-space-size=512' });
    try {
      const url = reader.sidecar.url;
      const probe = async (objectId: string, key: string, expect?: Buffer) => {
        const t0 = performance.now();
        const r = await http(objectUrl(url, CLS, objectId, `/storage-probe?key=${key}`), { timeoutMs: 120_000 });
        const ms = performance.now() - t0;
        const seen = r.status === 200 ? (JSON.parse(r.body.toString('utf8')) as { status: number; bytes: number }) : undefined;
        const want = expect === undefined ? 404 : 200;
        if (seen?.status !== want || (expect !== undefined && seen.bytes !== expect.length)) throw new Error(`reading ${objectId}/${key}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
        return ms;
      };
      const emptyMs = await probe('large-empty', 'v00000');
      const idle = await settledRss(reader.sidecar.pid);
      const firstMs = await probe(id, keyOf(7), value(7));
      // The probe app reports sizes only: check the bytes through the storage API during a held turn.
      const end = await holdTurn(reader, id);
      let listed = 0;
      try {
        const base = storageBase(url, CLS, id);
        const l = await http(`${base}/keys?prefix=v&limit=1000`, { timeoutMs: 120_000 });
        if (l.status !== 200) throw new Error(`list → ${l.status} ${l.body.toString('utf8').slice(0, 300)}`);
        const page = JSON.parse(l.body.toString('utf8')) as { entries: { key: string; value: string }[]; truncated: boolean };
        page.entries.forEach((e, i) => {
          if (e.key !== keyOf(i) || !Buffer.from(e.value, 'base64').equals(value(i))) throw new Error(`list entry ${i} (${e.key}) is not what was written`);
        });
        listed = page.entries.length;
        for (const i of [1, Math.floor(mib / 2), mib - 1]) {
          const g = await http(`${base}/keys/${keyOf(i)}`, { timeoutMs: 120_000 });
          if (g.status !== 200 || !g.body.equals(value(i))) throw new Error(`GET ${keyOf(i)} → ${g.status}, not the value written`);
        }
      } finally {
        await end();
      }
      const after = await settledRss(reader.sidecar.pid);
      if (reader.sidecar.child.exitCode !== null) throw new Error(`the reader sidecar exited (${reader.sidecar.child.exitCode})`);
      const readMiB = listed + 4;
      return [
        valueResult('large-object', `sidecar RSS growth: ${mib} MiB object activated, ~${readMiB} MiB of it read (heap limit 512 MB)`, 'MB', (after - idle) / MiB, 'the object size', mib, {
          target: { text: 'far below the object size (≤ ½)', met: (r) => r.ratio <= 0.5 },
          extra: { rssIdleMB: Math.round(idle / MiB), rssAfterMB: Math.round(after / MiB), valuesReadMiB: readMiB },
        }),
        valueResult('large-object', `activation + first read, ${mib} MiB object`, 'ms', firstMs, 'same for an empty object', emptyMs, {
          samples: { subject: [firstMs], baseline: [emptyMs] },
        }),
      ];
    } finally {
      await ctx.env.stopHosts([reader]);
    }
  },
};
