/**
 * Test app for turns (issue 12): a real process that records, per object,
 * how many handlers run at once, and can outlive deadlines and then write.
 *   GET  /healthz                     → ok
 *   POST /work?ms=N[&write=K][&read=K] → waits N ms; then PUTs storage key K (value = request id)
 *                                        and/or GETs key K through its sidecar; answers
 *                                        {id, rid, write: {status, code}, read: {status, value}}
 *   POST /rid                          → {id, rid, n} (n counts calls per object)
 *   POST /call?target=ID               → calls object ID of its own class through its sidecar with
 *                                        the castellan-request-id it received; {status, body}
 *   GET  /stats                        → {pid, maxConcurrent: {id: n}, seen: {id: n}, writes: [...]}
 * Env: PORT, CASTELLAN_SIDECAR_URL.
 */
import { createServer } from 'node:http';

const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';
const inflight = new Map<string, number>();
const maxConcurrent: Record<string, number> = {};
const seen: Record<string, number> = {};
const ridCalls = new Map<string, number>();
const writes: { id: string; key: string; rid: string; status: number; code: string; at: number }[] = [];

function storageUrl(cls: string, id: string, rest: string): string {
  return `${sidecar}/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}${rest}`;
}

function errorCode(text: string): string {
  try {
    return (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
  } catch {
    return '';
  }
}

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const cls = String(req.headers['castellan-class'] ?? '');
      const id = decodeURIComponent(String(req.headers['castellan-id'] ?? ''));
      const rid = String(req.headers['castellan-request-id'] ?? '');
      const json = (status: number, v: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (url.pathname === '/healthz') return json(200, { ok: true });
      if (url.pathname === '/stats') return json(200, { pid: process.pid, maxConcurrent, seen, writes });
      const n = (inflight.get(id) ?? 0) + 1;
      inflight.set(id, n);
      maxConcurrent[id] = Math.max(maxConcurrent[id] ?? 0, n);
      seen[id] = (seen[id] ?? 0) + 1;
      try {
        if (url.pathname === '/work') {
          await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? '0')));
          const out: Record<string, unknown> = { id, rid };
          const wkey = url.searchParams.get('write');
          if (wkey !== null) {
            const r = await fetch(storageUrl(cls, id, `/keys/${encodeURIComponent(wkey)}`), { method: 'PUT', body: rid });
            const text = await r.text();
            const w = { id, key: wkey, rid, status: r.status, code: errorCode(text), at: Date.now() };
            writes.push(w);
            out.write = { status: w.status, code: w.code };
          }
          const rkey = url.searchParams.get('read');
          if (rkey !== null) {
            const r = await fetch(storageUrl(cls, id, `/keys/${encodeURIComponent(rkey)}`));
            out.read = { status: r.status, value: await r.text() };
          }
          return json(200, out);
        }
        if (url.pathname === '/rid') {
          const c = (ridCalls.get(id) ?? 0) + 1;
          ridCalls.set(id, c);
          return json(200, { id, rid, n: c });
        }
        if (url.pathname === '/call') {
          const target = url.searchParams.get('target') ?? '';
          const r = await fetch(`${sidecar}/v1/objects/${encodeURIComponent(cls)}/${encodeURIComponent(target)}/rid`, {
            method: 'POST',
            headers: { 'castellan-request-id': rid },
            signal: AbortSignal.timeout(20_000),
          });
          return json(200, { status: r.status, body: await r.text() });
        }
        json(404, { error: { code: 'NOT_FOUND', message: `no route ${url.pathname}`, retryable: false } });
      } catch (err) {
        json(500, { error: { code: 'APP_ERROR', message: String(err), retryable: false } });
      } finally {
        inflight.set(id, (inflight.get(id) ?? 1) - 1);
      }
    })();
  });
});

server.listen(Number(process.env.PORT ?? '0'), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
