/**
 * examples/counter (SPEC §4) on object storage:
 * - many callers increment one counter across owner kills (-9): the final
 *   value is ≥ every acknowledged increment and ≤ acknowledged + indeterminate;
 * - `POST /alarm-in` fires the alarm handler, which counts in storage key `alarms`;
 * - the same through `castellan dev` (1-node embedded NATS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { terminate } from '../../common/children.ts';
import { freePort, sleep, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { counterExample, startStorageHost } from '../harness/apps/storage-host.ts';
import { logDir, signal, startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '8s', CASTELLAN_UNAVAILABLE_WAIT: '5s' };

describe('examples/counter on a 3-node cluster', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  const clients: SidecarProc[] = [];
  let n = 0;
  const newHost = async () => {
    const h = await startStorageHost(`ct-h${n++}`, 'counter', nats.urls, env, counterExample);
    hosts.push(h);
    return h;
  };

  beforeAll(async () => {
    nats = await startNats(3);
    for (let i = 0; i < 3; i++) await newHost();
    clients.push(await startClient('ct-c0', nats.urls, env), await startClient('ct-c1', nats.urls, env));
    console.log(`sidecar logs in ${logDir}`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...hosts, ...clients].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const call = (c: SidecarProc, id: string, path: string, init: RequestInit = {}) =>
    fetch(`${c.url}/v1/objects/counter/${encodeURIComponent(id)}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
  const read = async (id: string) => {
    const r = await call(clients[0]!, id, '/');
    const text = await r.text();
    if (r.status !== 200) throw new Error(`GET / → ${r.status} ${text}`);
    return JSON.parse(text) as { value: number; alarms: number };
  };

  it('increments from many callers add up across owner kills', async () => {
    const id = 'shared';
    let acked = 0;
    let unsure = 0;
    let kills = 0;
    const values: number[] = [];
    const stopAt = performance.now() + 25_000;
    const caller = async (c: SidecarProc) => {
      while (performance.now() < stopAt) {
        try {
          const r = await call(c, id, '/increment', { method: 'POST' });
          const text = await r.text();
          if (r.status === 200) {
            acked++;
            values.push((JSON.parse(text) as { value: number }).value);
          } else {
            unsure++;
            await sleep(50);
          }
        } catch {
          unsure++;
        }
      }
    };
    const killer = async () => {
      for (let k = 0; k < 2; k++) {
        await sleep(6_000);
        for (const h of hosts) {
          const r = await fetch(`${h.url}/v1/storage/counter/${id}/keys/count`).catch(() => undefined);
          if (r === undefined) continue;
          await r.arrayBuffer();
          // The owner answers 410 TURN_NOT_RUNNING outside a turn (or 200 inside one); others 409.
          if (r.status !== 200 && r.status !== 410) continue;
          signal(h, 'SIGKILL');
          signal(h.app!, 'SIGKILL');
          hosts.splice(hosts.indexOf(h), 1);
          kills++;
          await newHost();
          break;
        }
      }
    };
    await Promise.all([caller(clients[0]!), caller(clients[1]!), caller(clients[0]!), caller(clients[1]!), killer()]);
    const final = await waitFor('counter readable', () => read(id).catch(() => undefined), { timeoutMs: 30_000, intervalMs: 200 });
    console.log(`counter: ${acked} acknowledged, ${unsure} indeterminate, ${kills} owner kills, final ${final.value}`);
    expect(kills).toBeGreaterThanOrEqual(1);
    expect(final.value).toBeGreaterThanOrEqual(acked);
    expect(final.value).toBeLessThanOrEqual(acked + unsure);
    // Each acknowledged increment returned a distinct value (no lost update).
    expect(new Set(values).size).toBe(values.length);
  }, 120_000);

  it('the alarm handler counts alarms in storage', async () => {
    const id = 'alarming';
    const r = await call(clients[1]!, id, '/alarm-in', { method: 'POST', body: JSON.stringify({ ms: 500 }), headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
    const v = await waitFor('alarm counted', async () => {
      const x = await read(id).catch(() => undefined);
      return x !== undefined && x.alarms >= 1 ? x : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250 });
    expect(v).toEqual({ value: 0, alarms: 1 });
    const bad = await call(clients[1]!, id, '/alarm-in', { method: 'POST', body: '{"ms":"soon"}' });
    expect(bad.status).toBe(400);
    await bad.arrayBuffer();
  }, 60_000);
});

describe('examples/counter through castellan dev', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-counter-'));
  const stateDir = join(dir, 'state');
  let port: number;
  let dev: ChildProcess;
  let output = '';

  beforeAll(async () => {
    port = await freePort();
    writeFileSync(
      join(dir, 'dev.yaml'),
      ['nats: {embedded: {servers: 1}}', 'objects:', `  counter: {hosts: 2, app: {command: "${process.execPath} ${join(projectRoot, 'examples', 'counter', 'app.js')}"}}`, `client: {port: ${port}}`, ''].join('\n'),
    );
    dev = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(projectRoot, 'bin', 'castellan.js'), 'dev', '-f', join(dir, 'dev.yaml'), '--state-dir', stateDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    dev.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    await waitFor('state.json', async () => (existsSync(join(stateDir, 'state.json')) ? true : undefined), { timeoutMs: 90_000, intervalMs: 200 }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${output.slice(-3000)}`);
    });
  }, 120_000);

  afterAll(async () => {
    if (dev !== undefined) await terminate(dev, 'SIGTERM', 20_000);
  }, 30_000);

  it('increments and fires an alarm', async () => {
    const base = `http://127.0.0.1:${port}/v1/objects/counter/dev-1`;
    for (let i = 1; i <= 3; i++) {
      const r = await fetch(`${base}/increment`, { method: 'POST' });
      expect({ status: r.status, body: await r.text() }).toEqual({ status: 200, body: JSON.stringify({ value: i }) });
    }
    const a = await fetch(`${base}/alarm-in`, { method: 'POST', body: JSON.stringify({ ms: 300 }) });
    expect(a.status).toBe(200);
    await a.arrayBuffer();
    const v = await waitFor('alarm fired', async () => {
      const r = await fetch(`${base}/`);
      const x = JSON.parse(await r.text()) as { value: number; alarms: number };
      return x.alarms >= 1 ? x : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250 });
    expect(v).toEqual({ value: 3, alarms: 1 });
  }, 60_000);
});
