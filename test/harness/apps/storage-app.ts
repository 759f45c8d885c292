/**
 * Test app for object storage: a real process that lets a test drive its own
 * sidecar's storage API from inside an object's activation.
 *   ANY  /s/<rest>[?q]      → the same method on {CASTELLAN_SIDECAR_URL}/v1/storage/{class}/{id}/<rest>[?q]
 *                             (body, if-match, if-none-match, content-type passed; status, body,
 *                             castellan-version and content-type returned)
 *   POST /.castellan/alarm  → appends {retryCount, t, pid} to storage key `alarm-calls` (JSON array);
 *                             answers 500 while the number of calls is ≤ storage key `alarm-fail` (a number)
 *   GET  /pid               → {pid}
 * Env: PORT, CASTELLAN_SIDECAR_URL.
 */
import { createServer } from 'node:http';

const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';

function storageUrl(cls: string, id: string, rest: string): string {
  return `${sidecar}/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}${rest}`;
}

async function appendAlarmCall(cls: string, id: string, entry: unknown): Promise<{ calls: number; fail: number }> {
  for (let i = 0; i < 20; i++) {
    const cur = await fetch(storageUrl(cls, id, '/keys/alarm-calls'));
    const list = cur.status === 404 ? [] : (JSON.parse(await cur.text()) as unknown[]);
    if (cur.status === 404) await cur.arrayBuffer();
    const version = cur.headers.get('castellan-version');
    const headers: Record<string, string> = version === null ? { 'if-none-match': '*' } : { 'if-match': version };
    list.push(entry);
    const put = await fetch(storageUrl(cls, id, '/keys/alarm-calls'), { method: 'PUT', headers, body: JSON.stringify(list) });
    const text = await put.text();
    if (put.status === 409 && text.includes('"CONFLICT"')) continue;
    if (!put.ok) throw new Error(`storage PUT failed: ${put.status} ${text}`);
    const failRes = await fetch(storageUrl(cls, id, '/keys/alarm-fail'));
    const fail = failRes.ok ? Number(await failRes.text()) : (await failRes.arrayBuffer(), 0);
    return { calls: list.length, fail };
  }
  throw new Error('alarm-calls contended');
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    void (async () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      const cls = String(req.headers['castellan-class'] ?? '');
      const id = decodeURIComponent(String(req.headers['castellan-id'] ?? ''));
      try {
        if (url.pathname === '/pid') {
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ pid: process.pid }));
        }
        if (url.pathname === '/.castellan/alarm' && req.method === 'POST') {
          const retryCount = Number(req.headers['castellan-alarm-retry-count'] ?? '-1');
          const { calls, fail } = await appendAlarmCall(cls, id, { retryCount, t: Date.now(), pid: process.pid });
          res.writeHead(calls <= fail ? 500 : 200, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ calls }));
        }
        if (url.pathname.startsWith('/s/') || url.pathname === '/s') {
          // Keep the path as received (still percent-encoded).
          const raw = (req.url ?? '').slice(2);
          const headers: Record<string, string> = {};
          for (const h of ['if-match', 'if-none-match', 'content-type']) {
            const v = req.headers[h];
            if (typeof v === 'string') headers[h] = v;
          }
          const init: RequestInit = { method: req.method ?? 'GET', headers };
          if (req.method !== 'GET' && req.method !== 'HEAD' && body.length > 0) init.body = body;
          const r = await fetch(storageUrl(cls, id, raw), init);
          const out = Buffer.from(await r.arrayBuffer());
          const h: Record<string, string> = { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream' };
          const v = r.headers.get('castellan-version');
          if (v !== null) h['castellan-version'] = v;
          res.writeHead(r.status, h);
          return res.end(out);
        }
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('no route');
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      }
    })();
  });
});

server.listen(Number(process.env.PORT ?? '0'), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
