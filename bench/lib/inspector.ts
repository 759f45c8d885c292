/**
 * Live heap of a process started with `--inspect=127.0.0.1:<port>`, measured
 * exactly: over the V8 inspector protocol, a full garbage collection
 * (`HeapProfiler.collectGarbage`, twice) and then `Runtime.getHeapUsage`
 * (JS heap plus array buffer contents).
 * RSS cannot say what a process keeps (it holds garbage and allocator
 * high-water marks); this can, without any debug code in the sidecar.
 */
import { waitFor } from '../../common/net.ts';

interface Target {
  webSocketDebuggerUrl: string;
}

/** Bytes of live V8 heap and array buffer contents (after a full GC) of the process whose inspector listens on `port`. */
export async function liveHeapBytes(port: number): Promise<number> {
  const targets = await waitFor(
    `inspector on port ${port}`,
    async () => {
      const res = await fetch(`http://127.0.0.1:${port}/json/list`, { signal: AbortSignal.timeout(2_000) });
      const list = (await res.json()) as Target[];
      return list.length > 0 ? list : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot open the inspector of port ${port}`)), { once: true });
  });
  let seq = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.addEventListener('message', (ev) => {
    const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (m.id === undefined) return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error !== undefined) p?.reject(new Error(m.error.message));
    else p?.resolve(m.result);
  });
  const send = (method: string) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method }));
    });
  try {
    await send('HeapProfiler.enable');
    await send('HeapProfiler.collectGarbage');
    await send('HeapProfiler.collectGarbage');
    // usedSize: the JS heap; backingStorageSize: ArrayBuffer contents kept outside it (typed arrays over 64 bytes).
    const usage = (await send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
    return usage.usedSize + (usage.backingStorageSize ?? 0);
  } finally {
    ws.close();
  }
}
