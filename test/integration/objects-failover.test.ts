/**
 * Durable objects, single activation under failures: kill -9 of the owner,
 * SIGTERM under load (zero failed calls), SIGSTOP past the lease (the old owner
 * serves nothing after SIGCONT), a call whose host froze before taking it
 * (sent elsewhere, not a 504) and one whose host died after taking it (504,
 * never run twice), and a linearizability check with concurrent
 * callers while a host is killed. Real 3-node NATS; hosts, apps and clients are
 * processes; host lease TTL 1 s.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { logger } from '../../common/logger.ts';
import { sleep } from '../../common/net.ts';
import { ObjectStore } from '../../sidecar/objects/ownership-store.ts';
import { decodeEnvelope, EARLIER_SESSION, encodeEnvelope, type ReplyMeta, type RequestMeta } from '../../sidecar/objects/wire.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { logDir, signal, startClient, startHost, stopProc, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '3s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };

interface Ack {
  id: string;
  value: number;
  pid: number;
  activation: number;
  start: number;
  end: number;
}

describe('durable objects: failover and handoff', () => {
  let nats: TestNats;
  const hosts: SidecarProc[] = [];
  const clients: SidecarProc[] = [];
  let seq = 0;

  const newHost = async () => {
    const h = await startHost(`f-h${seq++}`, 'counter', nats.urls, env);
    hosts.push(h);
    return h;
  };
  const live = () => hosts.filter((h) => h.child.exitCode === null && h.child.signalCode === null);
  const ownerOf = (pid: number) => hosts.find((h) => h.app?.pid === pid);

  async function increment(client: SidecarProc, id: string): Promise<{ status: number; ack?: Ack; text: string }> {
    const start = performance.now();
    const res = await fetch(`${client.url}/v1/objects/counter/${encodeURIComponent(id)}/increment`, { method: 'POST' });
    const text = await res.text();
    const end = performance.now();
    if (res.status !== 200) return { status: res.status, text };
    const v = JSON.parse(text) as Omit<Ack, 'start' | 'end'>;
    return { status: 200, ack: { ...v, id, start, end }, text };
  }

  beforeAll(async () => {
    nats = await startNats(3);
    await Promise.all([newHost(), newHost(), newHost()]);
    clients.push(...(await Promise.all([startClient('f-c0', nats.urls, env), startClient('f-c1', nats.urls, env)])));
    console.log(`sidecar logs in ${logDir}`);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([...hosts, ...clients].map((p) => stopProc(p, 'SIGKILL')));
    await nats?.dispose();
  }, 30_000);

  it('serves an object again after its owner is killed -9', async () => {
    const first = await increment(clients[0]!, 'k9');
    expect(first.status).toBe(200);
    const owner = ownerOf(first.ack!.pid)!;
    const killedAt = performance.now();
    signal(owner, 'SIGKILL');
    let served: Ack | undefined;
    while (served === undefined && performance.now() - killedAt < 15_000) {
      const r = await increment(clients[1]!, 'k9');
      if (r.status === 200) served = r.ack;
      else await sleep(50);
    }
    const failoverMs = performance.now() - killedAt;
    console.log(`kill -9 failover: object served again after ${failoverMs.toFixed(0)} ms (lease TTL 1 s)`);
    expect(served).toBeDefined();
    expect(served!.pid).not.toBe(first.ack!.pid);
    expect(served!.activation).toBeGreaterThan(first.ack!.activation);
    expect(failoverMs).toBeLessThan(10_000);
    await newHost();
  }, 60_000);

  it('loses no call when a host is stopped with SIGTERM under steady load', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => `g${i}`);
    // Activate every object first, and pick a host that owns at least one.
    const owners = new Map<string, number>();
    for (const id of ids) owners.set(id, (await increment(clients[0]!, id)).ack!.pid);
    const victim = live().find((h) => [...owners.values()].includes(h.app!.pid))!;
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    const loops = Array.from({ length: 6 }, async (_, i) => {
      while (!stop) {
        const r = await increment(clients[i % 2]!, ids[i % ids.length]!);
        if (r.status === 200) ok++;
        else failures.push(`${r.status} ${r.text}`);
      }
    });
    await sleep(500);
    const stoppedAt = performance.now();
    await stopProc(victim, 'SIGTERM');
    const drainMs = performance.now() - stoppedAt;
    await sleep(700);
    stop = true;
    await Promise.all(loops);
    console.log(`SIGTERM under load: ${ok} calls ok, ${failures.length} failed, drain took ${drainMs.toFixed(0)} ms`);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    await newHost();
  }, 60_000);

  it('a SIGSTOPped owner loses the object after its lease, and serves nothing for it after SIGCONT', async () => {
    const id = 'stopped';
    const first = await increment(clients[0]!, id);
    const owner = ownerOf(first.ack!.pid)!;
    const seenBefore = async () => ((await (await fetch(`${owner.app!.url}/stats`)).json()) as { seen: Record<string, number> }).seen[id] ?? 0;
    const before = await seenBefore();
    signal(owner, 'SIGSTOP');
    let moved: Ack | undefined;
    const stoppedAt = performance.now();
    try {
      while (moved === undefined && performance.now() - stoppedAt < 20_000) {
        const r = await increment(clients[1]!, id);
        if (r.status === 200 && r.ack!.pid !== owner.app!.pid) moved = r.ack;
        else await sleep(50);
      }
      expect(moved).toBeDefined();
      console.log(`SIGSTOP takeover after ${(performance.now() - stoppedAt).toFixed(0)} ms`);
    } finally {
      signal(owner, 'SIGCONT');
    }
    // The old owner wakes up: it must not serve the object, whoever asks.
    await sleep(300);
    for (let i = 0; i < 10; i++) {
      for (const via of [owner, clients[0]!, clients[1]!]) {
        const r = await increment(via, id);
        if (r.status === 200) expect(r.ack!.pid).toBe(moved!.pid);
      }
    }
    expect(await seenBefore()).toBe(before);
  }, 60_000);

  it('sends a call elsewhere, transparently, when its host froze before taking it (no receipt: it never ran)', async () => {
    const id = 'frozen-before-receipt';
    const first = await increment(clients[0]!, id);
    expect(first.status).toBe(200);
    const owner = ownerOf(first.ack!.pid)!;
    const seen = async () => ((await (await fetch(`${owner.app!.url}/stats`)).json()) as { seen: Record<string, number> }).seen[id] ?? 0;
    const before = await seen();
    signal(owner, 'SIGSTOP');
    let r: Awaited<ReturnType<typeof increment>>;
    const t0 = performance.now();
    try {
      // Both callers know the frozen host as the owner; the call reaches its socket and is never taken.
      r = await increment(clients[0]!, id);
    } finally {
      signal(owner, 'SIGCONT');
    }
    console.log(`call to a frozen owner served elsewhere after ${(performance.now() - t0).toFixed(0)} ms: ${r.status} ${r.status === 200 ? '' : r.text}`);
    expect(r.status).toBe(200);
    expect(r.ack!.pid).not.toBe(owner.app!.pid);
    expect(r.ack!.activation).toBeGreaterThan(first.ack!.activation);
    // The old owner, awake again, never runs the call it held in its socket.
    await sleep(1_000);
    expect(await seen()).toBe(before);
  }, 60_000);

  it('a host never runs a request addressed to another of its sessions (the caller may have sent it elsewhere)', async () => {
    const id = 'stale-session';
    const first = await increment(clients[0]!, id);
    expect(first.status).toBe(200);
    const owner = ownerOf(first.ack!.pid)!;
    const seen = async () => ((await (await fetch(`${owner.app!.url}/stats`)).json()) as { seen: Record<string, number> }).seen[id] ?? 0;
    const before = await seen();
    const nc = await nats.connect();
    const names = new ObjectStore(nc, { prefix: 'castellan', namespace: 'default', timeoutMs: 5_000, log: logger('test.failover') }).names('counter');
    const caller = { namespace: 'default', serviceAccount: 'default' };
    const request = (session?: string) =>
      encodeEnvelope({
        v: 1,
        cls: 'counter',
        id,
        method: 'POST',
        path: '/increment',
        query: '',
        headers: [],
        rid: `raw-${session ?? 'none'}`,
        timeoutMs: 5_000,
        ...(session === undefined ? {} : { session }),
      } satisfies RequestMeta);
    const ask = async (session?: string) => decodeEnvelope<ReplyMeta>((await nc.request(names.rpc(owner.name, caller), request(session), { timeout: 10_000 })).data).meta;
    expect(await ask('an-earlier-session')).toEqual({ t: 'retry', reason: EARLIER_SESSION });
    expect(await seen()).toBe(before);
    // Without a session (older callers, the remote-namespace door) it is served as before.
    expect(await ask()).toMatchObject({ t: 'ok', status: 200 });
    expect(await seen()).toBe(before + 1);
    await nc.close();
  }, 60_000);

  it('answers 504, and never runs the call elsewhere, when its host dies after taking it', async () => {
    const id = 'died-after-receipt';
    const first = await increment(clients[0]!, id);
    const owner = ownerOf(first.ack!.pid)!;
    const seenAll = async () => {
      let n = 0;
      // Every app still running, also those whose sidecar was killed (the app keeps running).
      for (const h of hosts) {
        const stats = await fetch(`${h.app!.url}/stats`).then((r) => r.json() as Promise<{ seen: Record<string, number> }>, () => undefined);
        n += stats?.seen[id] ?? 0;
      }
      return n;
    };
    const before = await seenAll();
    const pending = fetch(`${clients[1]!.url}/v1/objects/counter/${id}/sleep?ms=2500`, { method: 'POST' });
    const appSaw = async () => ((await (await fetch(`${owner.app!.url}/stats`)).json()) as { seen: Record<string, number> }).seen[id] ?? 0;
    const t0 = performance.now();
    while ((await appSaw()) === first.ack!.value && performance.now() - t0 < 5_000) await sleep(20);
    // The handler runs in the app; its sidecar (which acknowledged the call) dies.
    signal(owner, 'SIGKILL');
    const res = await pending;
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { code: 'OBJECT_TIMEOUT', message: expect.stringContaining('stopped before answering') } });
    await sleep(500);
    // Ran once (in the app whose sidecar died), never again elsewhere.
    expect((await seenAll()) - before).toBe(1);
    await newHost();
  }, 60_000);

  it('keeps single activation for concurrent callers while a host is killed -9 (linearizability)', async () => {
    const ids = ['lin-a', 'lin-b', 'lin-c', 'lin-d'];
    const acks: Ack[] = [];
    const failures: number[] = [];
    let stop = false;
    const loops = Array.from({ length: 12 }, async (_, i) => {
      while (!stop) {
        const r = await increment(clients[i % 2]!, ids[i % ids.length]!);
        if (r.ack !== undefined) acks.push(r.ack);
        else failures.push(r.status);
      }
    });
    await sleep(1_000);
    const counts = new Map<number, number>();
    for (const a of acks) counts.set(a.pid, (counts.get(a.pid) ?? 0) + 1);
    const victim = live().find((h) => counts.has(h.app!.pid)) ?? live()[0]!;
    signal(victim, 'SIGKILL');
    await sleep(3_500);
    stop = true;
    await Promise.all(loops);
    console.log(`linearizability: ${acks.length} acknowledged increments, ${failures.length} failed (${[...new Set(failures)].join(',')})`);
    expect(acks.length).toBeGreaterThan(100);

    for (const id of ids) {
      const mine = acks.filter((a) => a.id === id);
      const byActivation = new Map<number, Ack[]>();
      for (const a of mine) byActivation.set(a.activation, [...(byActivation.get(a.activation) ?? []), a]);
      for (const [, list] of byActivation) {
        // One process per activation, and no value acknowledged twice.
        expect(new Set(list.map((a) => a.pid)).size).toBe(1);
        expect(new Set(list.map((a) => a.value)).size).toBe(list.length);
        // Values follow completion order within the activation (serial, in memory).
        const sorted = [...list].sort((x, y) => x.value - y.value);
        for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.end).toBeGreaterThanOrEqual(sorted[i - 1]!.start);
      }
      // An older activation never serves a request that started after a newer one answered.
      const activations = [...byActivation.keys()].sort((x, y) => x - y);
      for (let i = 0; i < activations.length; i++) {
        for (let j = i + 1; j < activations.length; j++) {
          const older = byActivation.get(activations[i]!)!;
          const newerFirstEnd = Math.min(...byActivation.get(activations[j]!)!.map((a) => a.end));
          for (const a of older) expect(a.start).toBeLessThan(newerFirstEnd);
        }
      }
    }
  }, 60_000);
});
