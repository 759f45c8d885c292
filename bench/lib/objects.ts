/**
 * Durable-object helpers for scenarios: the shared `bench` class (3 object
 * hosts running bench/apps/mem-app.ts, one client sidecar), calls through a
 * sidecar, and finding ids that a given host owns (placement is rendezvous
 * hashing, so about one id in three lands on each host).
 */
import type { SidecarProc } from '../../test/harness/sidecars.ts';
import type { BenchEnv, Host } from './env.ts';
import { http, httpJson } from './http.ts';

export interface ObjectsFixture {
  cls: string;
  hosts: Host[];
  client: SidecarProc;
  /** Extra sidecar env the class was started with (replacement hosts get it too). */
  env: NodeJS.ProcessEnv;
}

export async function startObjectsFixture(env: BenchEnv, cls = 'bench', hosts = 3, sidecarEnv: NodeJS.ProcessEnv = {}): Promise<ObjectsFixture> {
  const [hs, client] = await Promise.all([env.startHosts(cls, hosts, sidecarEnv), env.startClient(undefined, sidecarEnv)]);
  return { cls, hosts: hs, client, env: sidecarEnv };
}

export function objectUrl(sidecarUrl: string, cls: string, id: string, path = '/hit'): string {
  return `${sidecarUrl}/v1/objects/${encodeURIComponent(cls)}/${encodeURIComponent(id)}${path}`;
}

/** One call that must succeed (2xx), else throws with the status and body. */
export async function call(sidecarUrl: string, cls: string, id: string, path = '/hit', method = 'POST', timeoutMs = 30_000): Promise<Buffer> {
  const r = await http(objectUrl(sidecarUrl, cls, id, path), { method, timeoutMs });
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${cls}/${id}${path} → ${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
  return r.body;
}

/** The host (pod name) that serves object `id` now; activates it if needed. */
export async function owner(sidecarUrl: string, cls: string, id: string, timeoutMs = 30_000): Promise<string> {
  const r = await httpJson<{ host: string }>(objectUrl(sidecarUrl, cls, id, '/whoami'), { timeoutMs });
  return r.host;
}

/** `n` ids (named `<prefix>-<i>`) whose objects are active on `host`. */
export async function idsOwnedBy(host: Host, prefix: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; ids.length < n; i++) {
    if (i > 200 + n * 30) throw new Error(`found only ${ids.length} of ${n} ids owned by ${host.name} after ${i} tries`);
    const id = `${prefix}-${i}`;
    if ((await owner(host.sidecar.url, host.cls, id)) === host.name) ids.push(id);
  }
  return ids;
}
