/**
 * A class stream never silently runs with fewer replicas than asked (issue
 * 12, item 7): a class created while one of three NATS servers is down is
 * still R3 (JetStream places the replica on the known offline peer, which
 * catches up when it returns); a class asking for more replicas than the
 * cluster can place is created with fewer and says so (metric, error log).
 * Real 3-node NATS, real processes.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { waitFor } from '../../common/net.ts';
import { counterExample, startStorageHost } from '../harness/apps/storage-host.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { logDir, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const CLS = 'thin';
const STREAM = 'CASTELLAN_OBJ_default_thin';

describe('class stream replicas', () => {
  let nats: TestNats;
  let host: SidecarProc | undefined;

  beforeAll(async () => {
    nats = await startNats(3);
  }, 120_000);

  afterAll(async () => {
    await stopProc(host, 'SIGKILL');
    await nats?.dispose();
  }, 30_000);

  const replicasMetric = async (sc: SidecarProc, cls: string): Promise<number | undefined> => {
    const text = await (await fetch(`${sc.url}/metrics`)).text();
    const m = new RegExp(`^castellan_object_stream_replicas\\{class="${cls}"[^}]*\\} (\\d+)`, 'm').exec(text);
    return m === null ? undefined : Number(m[1]);
  };

  it('a class created while one of three servers is down gets all its replicas and serves', async () => {
    await nats.cluster.kill(2);
    const up = nats.urls.filter((_, i) => i !== 2);
    host = await startStorageHost('rp-h0', CLS, up, { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_STORAGE_REPLICAS: '3' }, counterExample);
    // JetStream places the third replica on the known, offline peer: the stream is R3 and catches up later.
    expect(await replicasMetric(host, CLS)).toBe(3);
    const inc = await fetch(`${host.url}/v1/objects/${CLS}/x/increment`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
    expect(inc.status).toBe(200);
    await inc.arrayBuffer();
    await nats.cluster.restart(2, 60_000);
    const nc = await nats.connect();
    const jsm = await jetstreamManager(nc, { timeout: 5_000 });
    await waitFor(
      'all three replicas current',
      async () => {
        const info = await jsm.streams.info(STREAM);
        const peers = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).filter((r) => r.current).map((r) => r.name)];
        return info.config.num_replicas === 3 && peers.length === 3 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    const again = await fetch(`${host.url}/v1/objects/${CLS}/x/increment`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
    expect(await again.json()).toMatchObject({ value: 2 });
  }, 300_000);

  it('a class asking for more replicas than the cluster can place is created smaller and says so', async () => {
    const wide = await startStorageHost('rp-h1', 'wide', nats.urls, { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_STORAGE_REPLICAS: '5' }, counterExample);
    try {
      expect(await replicasMetric(wide, 'wide')).toBe(3);
      const text = await (await fetch(`${wide.url}/metrics`)).text();
      expect(text).toMatch(/^castellan_object_stream_replicas_requested\{class="wide"[^}]*\} 5/m);
      expect(readFileSync(join(logDir, 'rp-h1.log'), 'utf8')).toMatch(/fewer replicas than requested/);
      const inc = await fetch(`${wide.url}/v1/objects/wide/y/increment`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
      expect(inc.status).toBe(200);
      await inc.arrayBuffer();
    } finally {
      await stopProc(wide, 'SIGKILL');
    }
  }, 300_000);
});
