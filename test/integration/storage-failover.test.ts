/**
 * Object storage under failures (real 3-node NATS, R3 stream, host lease 1 s):
 * kill -9 of the owner in the middle of a stream of transactions (each is all
 * or nothing afterwards, every acknowledged one is there); a stale owner
 * (SIGSTOP past its lease, takeover, SIGCONT) cannot write; a NATS node killed
 * -9 loses no acknowledged write and writes continue.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sleep, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { startStorageHost } from '../harness/apps/storage-host.ts';
import { logDir, signal, startClient, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const CLS = 'durable';
const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '8s', CASTELLAN_UNAVAILABLE_WAIT: '5s' };

describe('object storage under failures', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  const clients: SidecarProc[] = [];
  let seq = 0;
  const newHost = async () => {
    const h = await startStorageHost(`sf-h${seq++}`, CLS, nats.urls, env);
    hosts.push(h);
    return h;
  };

  beforeAll(async () => {
    nats = await startNats(3);
    for (let i = 0; i < 3; i++) await newHost();
    clients.push(await startClient('sf-c0', nats.urls, env), await startClient('sf-c1', nats.urls, env));
    console.log(`sidecar logs in ${logDir}`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...hosts, ...clients].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  const s = (c: SidecarProc, id: string, rest: string, init: RequestInit = {}) =>
    fetch(`${c.url}/v1/objects/${CLS}/${encodeURIComponent(id)}/s${rest}`, { ...init, signal: AbortSignal.timeout(30_000) });
  const b64 = (t: string) => Buffer.from(t).toString('base64');
  const ownerOf = async (id: string): Promise<SidecarProc | undefined> => {
    for (const h of hosts) {
      if (h.child.exitCode !== null || h.child.signalCode !== null) continue;
      try {
        const r = await fetch(`${h.url}/v1/storage/${CLS}/${encodeURIComponent(id)}/keys`, { signal: AbortSignal.timeout(2_000) });
        await r.arrayBuffer();
        // The owner answers 410 TURN_NOT_RUNNING outside a turn (or 200 inside one); others 409.
        if (r.status === 200 || r.status === 410) return h;
      } catch {
        // not answering
      }
    }
    return undefined;
  };
  const kill = (h: SidecarProc) => {
    signal(h, 'SIGKILL');
    if (h.app !== undefined) signal(h.app, 'SIGKILL');
    hosts.splice(hosts.indexOf(h), 1);
  };
  type Listed = { entries: { key: string; value: string }[]; truncated: boolean };
  const listAll = (id: string, prefix: string) =>
    waitFor(`list of ${id}`, async () => {
      const r = await s(clients[0]!, id, `/keys?prefix=${encodeURIComponent(prefix)}&limit=10000`);
      const text = await r.text();
      return r.status === 200 ? (JSON.parse(text) as Listed) : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });

  it('kill -9 of the owner mid-stream: every transaction all-or-nothing, every acknowledged one present', async () => {
    const id = 'tx-stream';
    const acked = new Set<number>();
    const unsure = new Set<number>();
    let next = 0;
    let killedAt = 0;
    let ackedAfterKill = 0;
    const worker = async (c: SidecarProc) => {
      const deadline = performance.now() + 60_000;
      while (performance.now() < deadline && (killedAt === 0 || ackedAfterKill < 20)) {
        const i = next++;
        const ops = ['a', 'b', 'c'].map((x) => ({ op: 'put', key: `t/${i}/${x}`, value: b64(String(i)) }));
        try {
          const r = await s(c, id, '/transaction', { method: 'POST', body: JSON.stringify({ ops }) });
          await r.arrayBuffer();
          if (r.status === 200) {
            acked.add(i);
            if (killedAt > 0) ackedAfterKill++;
          } else {
            unsure.add(i);
            await sleep(50);
          }
        } catch {
          unsure.add(i);
        }
      }
    };
    const workers = [worker(clients[0]!), worker(clients[1]!)];
    await waitFor('20 acknowledged transactions', () => Promise.resolve(acked.size >= 20 ? true : undefined), { timeoutMs: 30_000, intervalMs: 20 });
    const owner = await ownerOf(id);
    expect(owner).toBeDefined();
    kill(owner!);
    killedAt = performance.now();
    await Promise.all(workers);
    await newHost();
    console.log(`transactions: ${acked.size} acknowledged (${ackedAfterKill} after the kill), ${unsure.size} indeterminate`);
    expect(ackedAfterKill).toBeGreaterThanOrEqual(20);
    const listed = await listAll(id, 't/');
    const present = new Map<number, Set<string>>();
    for (const e of listed.entries) {
      const [, n, part] = e.key.split('/');
      expect(Buffer.from(e.value, 'base64').toString()).toBe(n);
      const set = present.get(Number(n)) ?? new Set<string>();
      set.add(part!);
      present.set(Number(n), set);
    }
    for (const [n, parts] of present) expect({ n, parts: [...parts].sort() }).toEqual({ n, parts: ['a', 'b', 'c'] });
    for (const n of acked) expect({ n, present: present.has(n) }).toEqual({ n, present: true });
    for (const n of present.keys()) expect(acked.has(n) || unsure.has(n)).toBe(true);
  }, 150_000);

  it('a stale owner (SIGSTOP past its lease, SIGCONT after takeover) cannot write', async () => {
    const id = 'stale';
    const c = clients[0]!;
    const first = await s(c, id, '/keys/v', { method: 'PUT', body: 'before' });
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const owner = (await ownerOf(id))!;
    expect(owner).toBeDefined();
    signal(owner, 'SIGSTOP');
    try {
      // The app of the stopped host writes: the request waits in the kernel until SIGCONT.
      const staleWrite = fetch(`${owner.url}/v1/storage/${CLS}/${id}/keys/v`, { method: 'PUT', body: 'stale', signal: AbortSignal.timeout(60_000) });
      const staleTx = fetch(`${owner.url}/v1/storage/${CLS}/${id}/transaction`, {
        method: 'POST',
        body: JSON.stringify({ ops: [{ op: 'put', key: 'v', value: b64('stale-tx') }, { op: 'put', key: 'w', value: b64('stale-tx') }] }),
        signal: AbortSignal.timeout(60_000),
      });
      // Another host takes over once the stopped host's lease is past.
      await waitFor('takeover write', async () => {
        const r = await s(clients[1]!, id, '/keys/v', { method: 'PUT', body: 'after' });
        await r.arrayBuffer();
        return r.status === 200 ? true : undefined;
      }, { timeoutMs: 30_000, intervalMs: 200 });
      signal(owner, 'SIGCONT');
      const [w, t] = await Promise.all([staleWrite, staleTx]);
      const wt = await w.text();
      const tt = await t.text();
      expect({ status: w.status, body: wt }).toEqual({ status: 409, body: expect.stringContaining('NOT_OWNER') });
      expect({ status: t.status, body: tt }).toEqual({ status: 409, body: expect.stringContaining('NOT_OWNER') });
      const again = await fetch(`${owner.url}/v1/storage/${CLS}/${id}/keys/v`);
      expect(again.status).toBe(409);
      await again.arrayBuffer();
    } finally {
      signal(owner, 'SIGCONT');
    }
    await sleep(500);
    const g = await s(c, id, '/keys/v');
    expect(await g.text()).toBe('after');
    const w = await s(c, id, '/keys/w');
    expect(w.status).toBe(404);
    await w.arrayBuffer();
  }, 90_000);

  it('a NATS node killed -9 loses no acknowledged write, and writes continue', async () => {
    const id = 'nats-kill';
    const acked: number[] = [];
    const write = async (i: number, deadlineMs: number) => {
      const deadline = performance.now() + deadlineMs;
      while (performance.now() < deadline) {
        try {
          const r = await s(clients[i % 2]!, id, `/keys/k${i}`, { method: 'PUT', body: String(i) });
          await r.arrayBuffer();
          if (r.status === 200) {
            acked.push(i);
            return;
          }
        } catch {
          // retry
        }
        await sleep(200);
      }
    };
    for (let i = 0; i < 20; i++) await write(i, 20_000);
    expect(acked.length).toBe(20);
    await nats.cluster.kill(0);
    try {
      for (let i = 20; i < 40; i++) await write(i, 30_000);
      expect(acked.length).toBe(40);
      const listed = await listAll(id, 'k');
      expect(listed.entries.map((e) => e.key).sort()).toEqual(acked.map((i) => `k${i}`).sort());
    } finally {
      await nats.cluster.restart(0);
    }
  }, 150_000);
});
