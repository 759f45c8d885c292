/**
 * Object storage helpers (SPEC §2.2), spoken to the owning host's sidecar —
 * the only sidecar that serves an object's storage — plus the probe that
 * tells a scenario whether this build serves the storage API at all.
 */
import type { Host } from './env.ts';
import { http, httpJson } from './http.ts';
import { call } from './objects.ts';
import { SkipScenario } from './scenario.ts';

export function storageBase(sidecarUrl: string, cls: string, id: string): string {
  return `${sidecarUrl}/v1/storage/${encodeURIComponent(cls)}/${encodeURIComponent(id)}`;
}

/** Throws SkipScenario when the sidecar has no storage routes (404 ROUTE_NOT_FOUND). */
export async function requireStorage(sidecarUrl: string, cls: string, id: string): Promise<void> {
  const r = await http(`${storageBase(sidecarUrl, cls, id)}/keys/probe`, { method: 'PUT', body: 'probe' });
  const text = r.body.toString('utf8');
  if (r.status === 404 && text.includes('ROUTE_NOT_FOUND')) {
    throw new SkipScenario('the storage API (SPEC §2.2) is not served by this sidecar build (404 ROUTE_NOT_FOUND)');
  }
  if (r.status !== 200) throw new Error(`storage probe PUT → ${r.status} ${text.slice(0, 200)}`);
}

/**
 * Holds a turn of the object open on its host (bench/apps/mem-app.ts `/hold`):
 * the sidecar serves an object's storage only while one of its turns runs.
 * Resolves once the turn runs; the returned function ends it.
 */
export async function holdTurn(host: Host, id: string): Promise<() => Promise<void>> {
  const appUrl = `http://127.0.0.1:${host.app.port}`;
  const turn = call(host.sidecar.url, host.cls, id, '/hold', 'POST', 600_000);
  turn.catch(() => undefined);
  for (let i = 0; ; i++) {
    const r = await httpJson<{ held: boolean }>(`${appUrl}/holding?id=${encodeURIComponent(id)}`);
    if (r.held) break;
    if (i > 500) throw new Error(`the hold turn of ${id} did not start`);
    await new Promise((res) => setTimeout(res, 20));
  }
  return async () => {
    await http(`${appUrl}/release?id=${encodeURIComponent(id)}`, { method: 'POST' });
    await turn;
  };
}

export async function put(base: string, key: string, value: Uint8Array): Promise<void> {
  const r = await http(`${base}/keys/${encodeURIComponent(key)}`, { method: 'PUT', body: value });
  if (r.status !== 200) throw new Error(`PUT ${key} → ${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
}

export interface TxOp {
  op: 'put' | 'delete';
  key: string;
  value?: string;
}

export async function transaction(base: string, ops: TxOp[]): Promise<void> {
  await httpJson(`${base}/transaction`, { method: 'POST', body: JSON.stringify({ ops }) });
}

/** Writes `n` keys `k0…k{n-1}` (values of `valueBytes`) in transactions of 128 puts, `parallel` at a time. */
export async function fill(base: string, n: number, valueBytes = 64, parallel = 4): Promise<void> {
  const value = Buffer.alloc(valueBytes, 0x61).toString('base64');
  const batches: TxOp[][] = [];
  for (let i = 0; i < n; i += 128) {
    batches.push(Array.from({ length: Math.min(128, n - i) }, (_, j) => ({ op: 'put' as const, key: `k${i + j}`, value })));
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < batches.length) await transaction(base, batches[next++] as TxOp[]);
    }),
  );
}
