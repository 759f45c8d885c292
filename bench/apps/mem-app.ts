/**
 * Bench app for object hosts: an in-memory handler, as cheap as an HTTP
 * handler gets, so the benchmarks measure Castellan and not the app.
 *   ANY /hit                      → {"host","n"}   (per-object counter in memory)
 *   GET /whoami                   → {"host","pid"} (which host serves the object)
 *   GET /storage-probe?key=K      → reads key K of this object through the sidecar
 *                                   storage API (SPEC §2.2): {"host","status","bytes"}
 *   GET /storage-probe?list=N     → lists the object's first N keys (with values) instead
 *   POST /hold                    → holds the object's turn open (storage is served only
 *                                   during a turn) until `POST /release?id=ID` is sent
 *                                   straight to the app port; `GET /holding?id=ID` → {held}
 * Env: PORT, BENCH_HOST (the sidecar's pod name), CASTELLAN_SIDECAR_URL.
 */
import { Agent, createServer, request } from 'node:http';

const host = process.env.BENCH_HOST ?? 'unknown';
const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const counters = new Map<string, number>();
const holds = new Map<string, () => void>();

function sidecarGet(path: string): Promise<{ status: number; bytes: number; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${sidecar}${path}`, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const status = res.statusCode ?? 0;
        resolve(status === 200 ? { status, bytes: body.length } : { status, bytes: body.length, error: body.toString('utf8').slice(0, 500) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const url = req.url ?? '/';
    const id = String(req.headers['castellan-id'] ?? '');
    const cls = String(req.headers['castellan-class'] ?? '');
    const json = (status: number, v: unknown) => {
      const body = JSON.stringify(v);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (url.startsWith('/hit')) {
      const n = (counters.get(id) ?? 0) + 1;
      counters.set(id, n);
      return json(200, { host, n });
    }
    if (url.startsWith('/whoami')) return json(200, { host, pid: process.pid });
    if (url.startsWith('/holding') || url.startsWith('/release')) {
      const which = new URL(url, 'http://x').searchParams.get('id') ?? '';
      const release = holds.get(which);
      if (url.startsWith('/holding')) return json(200, { held: release !== undefined });
      holds.delete(which);
      release?.();
      return json(200, { released: release !== undefined });
    }
    if (url.startsWith('/hold')) {
      const held = new Promise<void>((resolve) => holds.set(id, resolve));
      void held.then(() => json(200, { host, held: id }));
      return;
    }
    if (url.startsWith('/storage-probe')) {
      const q = new URL(url, 'http://x').searchParams;
      const key = q.get('key') ?? 'k0';
      const list = q.get('list');
      const base = `/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}/keys`;
      sidecarGet(list === null ? `${base}/${encodeURIComponent(key)}` : `${base}?limit=${encodeURIComponent(list)}`).then(
        (r) => json(r.status === 200 || r.status === 404 ? 200 : 502, { host, ...r }),
        (err: Error) => json(502, { host, error: err.message }),
      );
      return;
    }
    json(404, { error: { code: 'NOT_FOUND', message: `bench app has no route ${url}`, retryable: false } });
  });
});

server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? '0'), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
