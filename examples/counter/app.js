// examples/counter: a durable-object counter using Castellan object storage (SPEC §4).
//   POST /increment        → {"value":N}        read-modify-write of key "count" (if-match / if-none-match)
//   GET  /                 → {"value":N,"alarms":M}
//   POST /alarm-in {"ms":N} → sets the object's alarm N ms ahead → {"at":epochMs}
//   POST /.castellan/alarm → (called by Castellan when the alarm is due) increments key "alarms"
// Plain Node 22+, no dependencies. Env: PORT (listen), CASTELLAN_SIDECAR_URL (storage API).
/* global fetch */
import { Buffer } from 'node:buffer';
import { createServer } from 'node:http';
import { URL } from 'node:url';

const port = Number(process.env.PORT ?? '8080');
const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';

function storageUrl(cls, id, rest) {
  return `${sidecar}/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}${rest}`;
}

class HttpError extends Error {
  constructor(status, body) {
    super(`storage answered ${status}: ${body}`);
    this.status = status;
    this.body = body;
  }
}

async function readCounter(cls, id, key) {
  const res = await fetch(storageUrl(cls, id, `/keys/${encodeURIComponent(key)}`));
  if (res.status === 404) {
    await res.arrayBuffer();
    return { value: 0, version: undefined };
  }
  if (!res.ok) throw new HttpError(res.status, await res.text());
  const value = Number(await res.text());
  return { value, version: res.headers.get('castellan-version') };
}

/** Adds 1 to a numeric key with optimistic concurrency; returns the new value. */
async function increment(cls, id, key) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const cur = await readCounter(cls, id, key);
    const next = cur.value + 1;
    const headers = cur.version === undefined ? { 'if-none-match': '*' } : { 'if-match': cur.version };
    const res = await fetch(storageUrl(cls, id, `/keys/${encodeURIComponent(key)}`), { method: 'PUT', headers, body: String(next) });
    const text = await res.text();
    if (res.ok) return next;
    if (res.status === 409 && JSON.parse(text).error?.code === 'CONFLICT') continue;
    throw new HttpError(res.status, text);
  }
  throw new HttpError(503, JSON.stringify({ error: { code: 'CONTENDED', message: 'too many conflicting writers', retryable: true } }));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof value === 'string' ? value : JSON.stringify(value));
}

const server = createServer(async (req, res) => {
  try {
    const body = await readBody(req);
    const cls = req.headers['castellan-class'];
    const rawId = req.headers['castellan-id'];
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/healthz') return send(res, 200, { ok: true });
    if (typeof cls !== 'string' || typeof rawId !== 'string') {
      return send(res, 400, { error: { code: 'NOT_AN_OBJECT_CALL', message: 'call me through /v1/objects/{class}/{id}', retryable: false } });
    }
    const id = decodeURIComponent(rawId);
    if (req.method === 'POST' && path === '/increment') return send(res, 200, { value: await increment(cls, id, 'count') });
    if (req.method === 'GET' && path === '/') {
      const [count, alarms] = await Promise.all([readCounter(cls, id, 'count'), readCounter(cls, id, 'alarms')]);
      return send(res, 200, { value: count.value, alarms: alarms.value });
    }
    if (req.method === 'POST' && path === '/alarm-in') {
      let ms;
      try {
        ms = Number(JSON.parse(body.toString('utf8') || '{}').ms);
      } catch {
        ms = NaN;
      }
      if (!Number.isFinite(ms) || ms < 0) return send(res, 400, { error: { code: 'BAD_REQUEST', message: 'body must be {"ms": N} with N ≥ 0', retryable: false } });
      const at = Date.now() + Math.round(ms);
      const r = await fetch(storageUrl(cls, id, '/alarm'), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ at }) });
      if (!r.ok) throw new HttpError(r.status, await r.text());
      await r.arrayBuffer();
      return send(res, 200, { at });
    }
    if (req.method === 'POST' && path === '/.castellan/alarm') {
      const alarms = await increment(cls, id, 'alarms');
      return send(res, 200, { alarms, retryCount: Number(req.headers['castellan-alarm-retry-count'] ?? '0') });
    }
    return send(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${path}`, retryable: false } });
  } catch (err) {
    if (err instanceof HttpError) return send(res, err.status, err.body);
    return send(res, 500, { error: { code: 'INTERNAL', message: String(err?.message ?? err), retryable: true } });
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`counter listening on 127.0.0.1:${port}, sidecar ${sidecar}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
