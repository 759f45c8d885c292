// Chat room: a durable object per room (class `chat`, id = room name).
// Every message is kept in the object's storage under `msg/<seq>` (seq is
// zero-padded so keys sort in order); `seq` holds the last sequence number.
// A post reads `seq`, then writes `seq` and the message in one transaction
// guarded by seq's version, so a message is never lost or overwritten.
//
//   POST /messages {"user":"ann","text":"hi"}  → 201 {"seq":N}
//   GET  /messages[?after=N&limit=M]           → {"messages":[{seq,user,text,at}],"more":bool}
//   GET  /                                     → {"room":"...","messages":N}
//   DELETE /                                   → {"deleted":true}   (clears the room)
//
// Env: PORT (listen here), CASTELLAN_SIDECAR_URL (this pod's sidecar).
/* global fetch */
import { Buffer } from 'node:buffer';
import { createServer } from 'node:http';
import { URL, URLSearchParams } from 'node:url';

const sidecar = process.env.CASTELLAN_SIDECAR_URL ?? 'http://127.0.0.1:3600';
const PAD = 12;

function storage(cls, id, rest = '') {
  return `${sidecar}/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}${rest}`;
}

async function sidecarCall(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  if (!res.ok && res.status !== 404) {
    const err = new Error(`sidecar ${init?.method ?? 'GET'} ${url}: ${res.status} ${text}`);
    err.status = res.status;
    throw err;
  }
  return { status: res.status, headers: res.headers, text };
}

/** The last sequence number and its version (undefined when the room is new). */
async function readSeq(cls, id) {
  const r = await sidecarCall(storage(cls, id, '/keys/seq'));
  if (r.status === 404) return { seq: 0, version: undefined };
  return { seq: Number(r.text), version: Number(r.headers.get('castellan-version')) };
}

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

async function post(cls, id, msg) {
  const { seq, version } = await readSeq(cls, id);
  const next = seq + 1;
  const entry = { seq: next, user: msg.user, text: msg.text, at: new Date().toISOString() };
  const tx = {
    checks: [version === undefined ? { key: 'seq', absent: true } : { key: 'seq', version }],
    ops: [
      { op: 'put', key: 'seq', value: b64(String(next)) },
      { op: 'put', key: `msg/${String(next).padStart(PAD, '0')}`, value: b64(JSON.stringify(entry)) },
    ],
  };
  await sidecarCall(storage(cls, id, '/transaction'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(tx) });
  return next;
}

async function history(cls, id, after, limit) {
  const q = new URLSearchParams({ prefix: 'msg/', limit: String(limit) });
  if (after > 0) q.set('startAfter', `msg/${String(after).padStart(PAD, '0')}`);
  const r = await sidecarCall(storage(cls, id, `/keys?${q}`));
  const { entries, truncated } = JSON.parse(r.text);
  return { messages: entries.map((e) => JSON.parse(Buffer.from(e.value, 'base64').toString('utf8'))), more: truncated };
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const cls = String(req.headers['castellan-class'] ?? '');
    const id = decodeURIComponent(String(req.headers['castellan-id'] ?? ''));
    const url = new URL(req.url ?? '/', 'http://app');
    try {
      if (cls === '' || id === '') return send(res, 400, { error: 'call me through Castellan: /v1/objects/chat/<room>/...' });
      if (req.method === 'POST' && url.pathname === '/messages') {
        let msg;
        try {
          msg = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(res, 400, { error: 'body must be JSON {"user":"...","text":"..."}' });
        }
        if (typeof msg?.user !== 'string' || typeof msg?.text !== 'string' || msg.text.length > 4000) {
          return send(res, 400, { error: 'body must be {"user":string,"text":string up to 4000 characters}' });
        }
        return send(res, 201, { seq: await post(cls, id, msg) });
      }
      if (req.method === 'GET' && url.pathname === '/messages') {
        const after = Number(url.searchParams.get('after') ?? '0');
        const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get('limit') ?? '100')));
        if (!Number.isInteger(after) || after < 0 || !Number.isInteger(limit)) return send(res, 400, { error: 'after and limit must be whole numbers' });
        return send(res, 200, await history(cls, id, after, limit));
      }
      if (req.method === 'GET' && url.pathname === '/') {
        return send(res, 200, { room: id, messages: (await readSeq(cls, id)).seq });
      }
      if (req.method === 'DELETE' && url.pathname === '/') {
        await sidecarCall(storage(cls, id), { method: 'DELETE' });
        return send(res, 200, { deleted: true });
      }
      return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    } catch (err) {
      console.error(`chat ${id}: ${err.message}`);
      // A conflict means another activation wrote in between (ownership moved): the caller may retry.
      send(res, err.status === 409 ? 409 : 503, { error: err.message });
    }
  });
});

server.listen(Number(process.env.PORT ?? '8080'), '127.0.0.1', () => console.log(`chat app listening on 127.0.0.1:${server.address().port}`));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
