/**
 * What the convenience commands (`call`, `queue`) share: which sidecar to talk
 * to (`--sidecar URL`, else $CASTELLAN_SIDECAR_URL, else http://127.0.0.1:3600),
 * one HTTP request to it with clear errors, and reading a body argument
 * (`-` = stdin, `@file` = a file).
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './usage.ts';

export const DEFAULT_SIDECAR = 'http://127.0.0.1:3600';

export const sidecarHelp = `  --sidecar URL      the sidecar to talk to (default $CASTELLAN_SIDECAR_URL or ${DEFAULT_SIDECAR})`;

/** A failed request: the message is what the user sees. */
export class RequestFailed extends Error {}

export function sidecarUrl(flag: string | undefined): string {
  const env = process.env.CASTELLAN_SIDECAR_URL;
  const raw = flag ?? (env === undefined || env === '' ? DEFAULT_SIDECAR : env);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--sidecar: "${raw}" is not a URL (example: ${DEFAULT_SIDECAR})`);
  }
  if (url.protocol !== 'http:') throw new UsageError(`--sidecar: expected an http:// URL, got "${raw}"`);
  return url.toString().replace(/\/+$/, '');
}

export interface SidecarResponse {
  status: number;
  statusText: string;
  headers: Headers;
  body: Buffer;
}

/** One request to the sidecar; a connection failure becomes a RequestFailed naming the sidecar. */
export async function request(base: string, method: string, path: string, init: { headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number } = {}): Promise<SidecarResponse> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: init.headers,
      body: init.body,
      signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    if (cause === 'ECONNREFUSED') throw new RequestFailed(`cannot reach the sidecar at ${base} (connection refused); is "castellan dev" running? (--sidecar URL)`);
    if ((err as Error).name === 'TimeoutError') throw new RequestFailed(`the sidecar at ${base} did not answer ${method} ${path} in time`);
    throw new RequestFailed(`request to ${base}${path} failed: ${(err as Error).message}${cause === undefined ? '' : ` (${cause})`}`);
  }
  return { status: res.status, statusText: res.statusText, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** `code: message` of a SPEC error body, or the raw text. */
export function describeFailure(res: SidecarResponse): string {
  const text = res.body.toString('utf8');
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string; retryable?: boolean } }).error;
    if (e?.code !== undefined) return `${res.status} ${e.code}: ${e.message ?? ''}${e.retryable === true ? ' (retryable)' : ''}`;
  } catch {
    // not JSON: show it as it is
  }
  return `${res.status} ${res.statusText}${text === '' ? '' : `: ${text.slice(0, 500)}`}`;
}

/** A body argument: `-` reads stdin, `@path` reads a file, anything else is the body itself. */
export function readBodyArg(arg: string): Buffer {
  if (arg === '-') return readFileSync(0);
  if (arg.startsWith('@')) {
    try {
      return readFileSync(arg.slice(1));
    } catch (err) {
      throw new UsageError(`cannot read ${arg.slice(1)}: ${(err as Error).message}`);
    }
  }
  return Buffer.from(arg, 'utf8');
}

/** Parses `-H 'name: value'` headers. */
export function parseHeaders(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    const name = i < 0 ? '' : h.slice(0, i).trim();
    if (name === '' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new UsageError(`-H "${h}": expected "Name: value"`);
    out[name.toLowerCase()] = h.slice(i + 1).trim();
  }
  return out;
}
