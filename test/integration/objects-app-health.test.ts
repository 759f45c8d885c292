/**
 * The app's health is part of hosting (issue 12, item 6): when the app of an
 * object's host dies while its sidecar lives, the host stops taking
 * placements and hands its objects over, so callers are served by another
 * host within seconds instead of getting 503 until the app returns; when the
 * app is back, the host is ready and placeable again. Real 3-node NATS, real
 * processes (the serial test app), the app killed with kill -9.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { join } from 'node:path';
import { waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { restartApp, startPatientClient, startStorageHost } from '../harness/apps/storage-host.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { logDir, signal, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const serialApp = join(projectRoot, 'test', 'harness', 'apps', 'serial-app.ts');
const CLS = 'healthy';
const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };

describe('app health gates hosting', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  let client: SidecarProc;

  beforeAll(async () => {
    nats = await startNats(3);
    hosts.push(await startStorageHost('ah-h0', CLS, nats.urls, env, serialApp), await startStorageHost('ah-h1', CLS, nats.urls, env, serialApp));
    client = await startPatientClient('ah-c0', nats.urls, env);
    console.log(`sidecar logs in ${logDir}`);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([...hosts, client].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const work = (id: string) => fetch(`${client.url}/v1/objects/${CLS}/${id}/work?ms=0&write=w`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
  const seenBy = async (h: SidecarProc, id: string): Promise<number> => {
    const r = await fetch(`${h.app!.url}/stats`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
    if (r === undefined || !r.ok) return 0;
    return ((await r.json()) as { seen: Record<string, number> }).seen[id] ?? 0;
  };

  it('hands an object over when its host’s app dies, and takes placements again when it is back', async () => {
    const id = 'moves';
    const first = await work(id);
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const owner = (await seenBy(hosts[0]!, id)) > 0 ? hosts[0]! : hosts[1]!;
    const other = owner === hosts[0] ? hosts[1]! : hosts[0]!;
    const before = await seenBy(other, id);
    signal(owner.app!, 'SIGKILL');
    const t0 = performance.now();
    await waitFor(
      'the object served by the other host',
      async () => {
        const r = await work(id);
        await r.arrayBuffer();
        return r.status === 200 && (await seenBy(other, id)) > before ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const movedMs = performance.now() - t0;
    console.log(`app killed: object served by the other host after ${Math.round(movedMs)} ms`);
    const ready = await fetch(`${owner.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/app/);
    // The write the other host made is there: storage moved with the object.
    const again = await work(id);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ write: { status: 200 } });

    await restartApp(owner, serialApp);
    await waitFor('the host ready again', async () => ((await fetch(`${owner.url}/readyz`)).status === 200 ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
  }, 120_000);
});
