/**
 * HTTP from the object host's sidecar to its app at 127.0.0.1:{appPort}:
 * one request per turn, a response size limit and keep-alive connections;
 * plus the readiness probe (TCP connect). A turn's call has no deadline: it
 * ends when the app answers or when its connection drops (the app process
 * died or closed it), so a turn never ends while its handler may still run
 * (host.ts). Callers that want a deadline pass `timeoutMs`. A refused
 * connection keeps its cause (`appRefused`): such a call certainly never ran.
 */
import { http } from '../../common/node-http.ts';
import { connect } from 'node:net';
import { Errors, type CastellanError } from '../../common/errors.ts';
import { filterHeaders, type HeaderList } from './wire.ts';

export interface AppResponse {
  status: number;
  headers: HeaderList;
  body: Buffer;
}

export interface AppCall {
  method: string;
  /** Path and query, starting with `/`. */
  target: string;
  headers: HeaderList;
  body: Uint8Array;
  /** Gives up (and closes the connection) after this long; without it, waits until the app answers or the connection drops. */
  timeoutMs?: number;
}

export class AppProxy {
  private readonly port: number;
  private readonly maxResponseBytes: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

  constructor(port: number, maxResponseBytes: number) {
    this.port = port;
    this.maxResponseBytes = maxResponseBytes;
  }

  call(c: AppCall): Promise<AppResponse> {
    return new Promise((resolve, reject) => {
      let done = false;
      const fail = (e: CastellanError) => {
        if (done) return;
        done = true;
        req.destroy();
        reject(e);
      };
      const headers: [string, string][] = c.headers.filter(([k]) => k.toLowerCase() !== 'content-length');
      headers.push(['host', `127.0.0.1:${this.port}`], ['content-length', String(c.body.length)]);
      const req = http.request({
        host: '127.0.0.1',
        port: this.port,
        method: c.method,
        path: c.target,
        headers: headers.flat(),
        agent: this.agent,
      });
      const limit = c.timeoutMs;
      const timer =
        limit === undefined ? undefined : setTimeout(() => fail(Errors.timeout(`The object did not answer within ${limit} ms.`, 'OBJECT_TIMEOUT')), Math.max(1, limit));
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const refused = err.code === 'ECONNREFUSED';
        fail(
          refused
            ? Errors.unavailable(`The object's app is not reachable on port ${this.port}.`, 'OBJECT_UNAVAILABLE', err)
            : Errors.unavailable(`The request to the object's app failed: ${err.message}`, 'OBJECT_UNAVAILABLE'),
        );
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.maxResponseBytes) {
            clearTimeout(timer);
            fail(Errors.payloadTooLarge(`The object's response body is larger than ${this.maxResponseBytes} bytes.`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          fail(Errors.unavailable(`Reading the object's response failed: ${err.message}`, 'OBJECT_UNAVAILABLE'));
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (done) return;
          done = true;
          resolve({ status: res.statusCode ?? 502, headers: filterHeaders(res.rawHeaders), body: Buffer.concat(chunks) });
        });
      });
      req.end(c.body);
    });
  }

  /** Whether something accepts TCP connections on the app port. */
  reachable(timeoutMs = 1_000): Promise<true | string> {
    return new Promise((resolve) => {
      const sock = connect({ host: '127.0.0.1', port: this.port });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve(`app on port ${this.port} did not accept a connection within ${timeoutMs} ms`);
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.destroy();
        resolve(true);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        resolve(`app not reachable on port ${this.port}: ${err.message}`);
      });
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Whether a failed call never reached the app: nothing accepted the connection (ECONNREFUSED), so no handler ran. */
export function appRefused(err: unknown): boolean {
  const cause = err instanceof Error ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
  return cause?.code === 'ECONNREFUSED';
}
