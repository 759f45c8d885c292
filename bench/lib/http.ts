/**
 * The benchmark's HTTP client: node:http with one keep-alive agent, so every
 * scenario and its baseline pay the same client cost per request. Loopback only.
 */
import { Agent, request } from 'node:http';

const agent = new Agent({ keepAlive: true, maxSockets: 512 });

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function http(
  url: string,
  opts: { method?: string; body?: string | Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpReply> {
  return once(url, opts).catch((err: unknown) => {
    // The keep-alive race (Node's http docs): the server closed an idle socket just as this request
    // reused it, so the request never reached the server; send it again once, on a new socket.
    if (err instanceof ReusedSocketReset) return once(url, opts);
    throw err;
  });
}

class ReusedSocketReset extends Error {}

function once(url: string, opts: Parameters<typeof http>[1] = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? Buffer.from(opts.body) : opts.body;
    const headers: Record<string, string> = { ...opts.headers };
    if (body !== undefined) headers['content-length'] = String(body.length);
    let answered = false;
    const req = request(url, { method: opts.method ?? 'GET', agent, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`HTTP ${opts.method ?? 'GET'} ${url} timed out`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered && req.reusedSocket && (err.code === 'ECONNRESET' || err.message === 'socket hang up')) reject(new ReusedSocketReset(err.message));
      else reject(err);
    });
    req.end(body);
  });
}

/** Like http(), but throws unless the status is 2xx; returns the parsed JSON body (or undefined when empty). */
export async function httpJson<T = unknown>(url: string, opts: Parameters<typeof http>[1] = {}): Promise<T> {
  const headers = opts.body !== undefined && typeof opts.body === 'string' ? { 'content-type': 'application/json', ...opts.headers } : opts.headers;
  const r = await http(url, { ...opts, ...(headers !== undefined ? { headers } : {}) });
  if (r.status < 200 || r.status > 299) throw new HttpError(r.status, `${opts.method ?? 'GET'} ${url} → ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
  return (r.body.length === 0 ? undefined : JSON.parse(r.body.toString('utf8'))) as T;
}

export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export function closeHttp(): void {
  agent.destroy();
}
