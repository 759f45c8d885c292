/**
 * Test app for object hosts: a real process keeping per-object counters in
 * memory. Routes (any object; `castellan-*` headers identify it):
 *   POST /increment        → {value, pid, activation, id}   (counter per id and activation)
 *   GET  /echo/...         → echoes method, path, query, headers and body (base64)
 *   ANY  /echo/...         → same
 *   POST /sleep?ms=N       → waits N ms, then {slept}
 *   GET  /stats            → {pid, maxConcurrent: {id: n}, seen: {id: n}}  (also without sidecar)
 *   ANY  /status/N         → replies status N with header x-test: yes
 *   POST /big?bytes=N      → N bytes of 0xab
 * Tracks the most concurrent requests any object saw (Serial must keep it 1).
 * Env: PORT.
 */
import { createServer } from 'node:http';

const counters = new Map<string, number>();
const inflight = new Map<string, number>();
const maxConcurrent: Record<string, number> = {};
const seen: Record<string, number> = {};

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    void (async () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      const rawId = req.headers['castellan-id'];
      const id = typeof rawId === 'string' ? decodeURIComponent(rawId) : '';
      const activation = String(req.headers['castellan-activation'] ?? '0');
      const json = (status: number, v: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (url.pathname === '/stats') return json(200, { pid: process.pid, maxConcurrent, seen });
      const n = (inflight.get(id) ?? 0) + 1;
      inflight.set(id, n);
      maxConcurrent[id] = Math.max(maxConcurrent[id] ?? 0, n);
      seen[id] = (seen[id] ?? 0) + 1;
      try {
        if (url.pathname === '/increment') {
          await new Promise((r) => setTimeout(r, Number(url.searchParams.get('delay') ?? '0')));
          const key = `${id}\0${activation}`;
          const value = (counters.get(key) ?? 0) + 1;
          counters.set(key, value);
          return json(200, { value, pid: process.pid, activation: Number(activation), id });
        }
        if (url.pathname === '/sleep') {
          const ms = Number(url.searchParams.get('ms') ?? '0');
          await new Promise((r) => setTimeout(r, ms));
          return json(200, { slept: ms });
        }
        if (url.pathname.startsWith('/status/')) {
          res.writeHead(Number(url.pathname.slice(8)), { 'x-test': 'yes', 'content-type': 'text/plain' });
          return res.end('status body');
        }
        if (url.pathname === '/big') {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          return res.end(Buffer.alloc(Number(url.searchParams.get('bytes') ?? '0'), 0xab));
        }
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo': 'one', 'set-cookie': ['a=1', 'b=2'] });
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            id,
            cls: req.headers['castellan-class'],
            rid: req.headers['castellan-request-id'],
            headers: req.headers,
            body: body.toString('base64'),
            pid: process.pid,
          }),
        );
      } finally {
        inflight.set(id, (inflight.get(id) ?? 1) - 1);
      }
    })();
  });
});

server.listen(Number(process.env.PORT ?? '0'), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
