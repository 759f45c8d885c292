/**
 * Small network helpers: free loopback ports and waiting for an HTTP endpoint.
 * Everything here talks to 127.0.0.1 only.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Listens on `port` (0: any) of 127.0.0.1 and closes again; the port, or undefined if it is taken. */
function probePort(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(undefined) : reject(err)));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The kernel's range for the local ports of outgoing connections (Linux; the usual default elsewhere). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo as number, hi as number];
  } catch {
    // not Linux: the default below
  }
  return [32768, 60999];
}

/**
 * Ports this process has handed out. A port is free when probed but is bound
 * only later by whoever asked for it (often after seconds: a sidecar's port is
 * chosen before its app starts); without this, a second caller in between
 * could be handed the same port and one of the two servers would fail with
 * EADDRINUSE for as long as the other lives (CI: a bench sidecar and another
 * host's app drew the same port).
 */
const handedOut = new Set<number>();

/**
 * A port nothing listens on, for a server started a moment later. Chosen
 * below the kernel's ephemeral range: a port from that range can be taken
 * meanwhile as the local port of any outgoing connection on the machine (a
 * sidecar's NATS connection, say), and then stays taken for that
 * connection's life — a server restarted on it fails with EADDRINUSE until
 * then. Never the same port twice in one process. Falls back to a
 * kernel-chosen port when no range is left below.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = ephemeralRange();
  const min = 10_000;
  // kwokctl takes the ports just below the range for its clusters (32762–32767 by default).
  const max = ephemeralLow - 101;
  if (max - min >= 1_000) {
    for (let i = 0; i < 100; i++) {
      const candidate = min + Math.floor(Math.random() * (max - min + 1));
      if (handedOut.has(candidate)) continue;
      // Reserved before the probe: concurrent callers never probe the same port.
      handedOut.add(candidate);
      const port = await probePort(candidate);
      if (port !== undefined) return port;
      handedOut.delete(candidate);
    }
  }
  for (let i = 0; i < 100; i++) {
    const any = await probePort(0);
    if (any === undefined) break;
    if (!handedOut.has(any)) {
      handedOut.add(any);
      return any;
    }
  }
  throw new Error('no free port');
}

/** `n` distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Thrown from a waitFor check to stop waiting at once. */
export class WaitAborted extends Error {}

/**
 * Polls `check` until it returns a value other than undefined, or throws after
 * `timeoutMs` with the last error seen. A WaitAborted from `check` ends the wait.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof WaitAborted) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${opts.timeoutMs ?? 30_000}ms waiting for ${what}${why}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** GET a loopback URL as JSON with a short timeout; undefined on non-2xx. */
export async function getJson(url: string, timeoutMs = 2_000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) return undefined;
  return res.json();
}
