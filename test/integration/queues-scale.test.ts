/**
 * Replicated queues with a backlog of thousands, on real 3-node NATS with 3
 * queue-host sidecars and 2 client sidecars as processes (lease TTL 1 s):
 * a host frozen (SIGSTOP) past its lease while peers take its messages over,
 * then killed -9 and restarted (it must become ready again), a second
 * failure after that takeover, replication retries around a slow peer (no
 * deleted message comes back from a late copy), and a purge during sends
 * (nothing purged comes back through restarts and failovers). Every
 * acknowledged message is received in the end.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sleep, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { call, drainQueue, killQueueProcs, liveQueueHosts, sendBacklog, startQueueClient, startQueueHost, type ApiMessage } from '../harness/queues.ts';
import { logDir, signal, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };
const Q = 'backlog';
const settings = { visibilityTimeout: '5s' };
const BACKLOG = 3_000;

describe('replicated queues at scale: backlog of thousands through freezes, restarts and failures', () => {
  let nats: TestNats;
  const hosts = new Map<number, SidecarProc>();
  const clients: SidecarProc[] = [];
  const bases = () => clients.map((c) => c.url);

  const restart = async (i: number) => {
    const h = await startQueueHost(Q, i, nats.urls, settings, env);
    hosts.set(i, h);
    return h;
  };
  const kill = (i: number) => signal(hosts.get(i)!, 'SIGKILL');
  const live = () => liveQueueHosts(clients[0]!.url, Q);
  const waitLive = (n: number) => waitFor(`${n} live hosts`, async () => ((await live()).length === n ? true : undefined), { timeoutMs: 120_000 });
  const hostLogs = () => [0, 1, 2].map((i) => readFileSync(join(logDir, `${Q}-${i}.log`), 'utf8')).join('\n');
  const running = (i: number) => hosts.get(i)!.child.exitCode === null && hosts.get(i)!.child.signalCode === null;
  const receiveNone = async (what: string) => {
    for (let i = 0; i < 3; i++) {
      const r = await call<{ messages: ApiMessage[] }>(clients[i % 2]!.url, 'POST', `/v1/queues/${Q}/receive`, { maxMessages: 10, waitSeconds: 2 });
      expect(r.status).toBe(200);
      expect({ what, bodies: r.body.messages.map((m) => m.body) }).toEqual({ what, bodies: [] });
    }
  };

  beforeAll(async () => {
    nats = await startNats(3);
    await Promise.all([0, 1, 2].map(restart));
    clients.push(...(await Promise.all([startQueueClient('qs-c0', nats.urls, env), startQueueClient('qs-c1', nats.urls, env)])));
    await waitLive(3);
    console.log(`sidecar logs in ${logDir}`);
  }, 400_000);

  afterAll(async () => {
    await killQueueProcs();
    await nats?.dispose();
  }, 30_000);

  it('a host frozen past its lease, then killed -9 and restarted, becomes ready again; a second failure after the takeover loses nothing', async () => {
    const bodies = Array.from({ length: BACKLOG }, (_, i) => `backlog-${i}`);
    const acked = await sendBacklog(clients[0]!.url, Q, bodies);
    expect(acked.size).toBe(BACKLOG);
    for (const replicas of acked.values()) expect(new Set(replicas).size).toBe(2);

    // Frozen past its lease: its peers fence it and take its messages over.
    signal(hosts.get(0)!, 'SIGSTOP');
    await waitLive(2);
    await sleep(3_000);
    signal(hosts.get(0)!, 'SIGCONT');
    await waitLive(3);
    // Killed and restarted with the backlog (and its peers' takeover records) in JetStream.
    kill(0);
    const restartedAt = performance.now();
    await restart(0);
    console.log(`restart of ${Q}-0 with a backlog of ${BACKLOG}: ready after ${Math.round(performance.now() - restartedAt)} ms`);
    await waitLive(3);
    // A second failure after the first takeover: messages that host 1 holds or took over move on.
    kill(1);
    const { seen, deliveries } = await drainQueue(bases(), Q, new Set(acked.keys()), 180_000);
    const missing = [...acked.keys()].filter((b) => !seen.has(b));
    console.log(`drain: ${seen.size} distinct of ${acked.size}, ${deliveries - seen.size} redeliveries, ${missing.length} missing`);
    expect(missing).toEqual([]);
    await restart(1);
    await waitLive(3);
    await receiveNone('after draining the backlog and restarting');
    expect([0, 1, 2].filter((i) => !running(i))).toEqual([]);
    expect(hostLogs()).not.toMatch(/too many results|unhandled rejection/);
  }, 600_000);

  it('replication retries around a slow (frozen) peer leave no late copy that comes back after the deletes', async () => {
    const acked = new Map<string, string[]>();
    let stop = false;
    let n = 0;
    const sender = async (c: SidecarProc) => {
      while (!stop) {
        const body = `slow-peer-${n++}`;
        const r = await call<{ replicas: string[] }>(c.url, 'POST', `/v1/queues/${Q}/messages`, { body }).catch(() => undefined);
        if (r?.status === 201) acked.set(body, r.body.replicas);
      }
    };
    const senders = [0, 1, 0, 1, 0, 1, 0, 1].map((i) => sender(clients[i]!));
    await waitFor('200 acknowledged sends', async () => (acked.size >= 200 ? true : undefined), { timeoutMs: 120_000, intervalMs: 20 });
    signal(hosts.get(2)!, 'SIGSTOP');
    await sleep(2_500);
    signal(hosts.get(2)!, 'SIGCONT');
    const at = acked.size;
    await waitFor('200 more acknowledged sends', async () => (acked.size >= at + 200 ? true : undefined), { timeoutMs: 120_000, intervalMs: 20 });
    stop = true;
    await Promise.all(senders);
    for (const replicas of acked.values()) expect(new Set(replicas).size).toBe(2);
    await waitLive(3);
    const { seen } = await drainQueue(bases(), Q, new Set(acked.keys()), 180_000);
    expect([...acked.keys()].filter((b) => !seen.has(b))).toEqual([]);
    // Host 2 alone: it would promote any copy it kept of a deleted message.
    kill(0);
    kill(1);
    await waitLive(1);
    await sleep(2_000);
    await receiveNone('host 2 alone after the slow-peer sends were deleted');
    await Promise.all([restart(0), restart(1)]);
    await waitLive(3);
    await receiveNone('all hosts back after the slow-peer sends were deleted');
    expect(hostLogs()).not.toMatch(/too many results|unhandled rejection/);
  }, 600_000);

  it('a purge during sends: nothing acknowledged before it comes back through a restart and a failover; everything after it is delivered', async () => {
    const before = new Set<string>();
    const after = new Set<string>();
    let phase: 'before' | 'during' | 'after' = 'before';
    let stop = false;
    let n = 0;
    const sender = async (c: SidecarProc) => {
      while (!stop) {
        const body = `purge-race-${n++}`;
        const sentIn = phase;
        const r = await call(c.url, 'POST', `/v1/queues/${Q}/messages`, { body }).catch(() => undefined);
        if (r?.status !== 201) continue;
        if (sentIn === 'before' && phase === 'before') before.add(body);
        if (sentIn === 'after') after.add(body);
      }
    };
    const senders = [0, 1, 0, 1, 0, 1].map((i) => sender(clients[i]!));
    await waitFor('1000 acknowledged sends', async () => (before.size >= 1_000 ? true : undefined), { timeoutMs: 120_000, intervalMs: 20 });
    phase = 'during';
    const purged = await call<{ purged: number }>(clients[0]!.url, 'POST', `/v1/queues/${Q}/purge`);
    expect(purged.status).toBe(200);
    phase = 'after';
    await waitFor('200 acknowledged sends after the purge', async () => (after.size >= 200 ? true : undefined), { timeoutMs: 120_000, intervalMs: 20 });
    stop = true;
    await Promise.all(senders);
    // A restart (reload from JetStream), then a failover (standbys promote).
    kill(2);
    await restart(2);
    await waitLive(3);
    kill(0);
    const { seen, unexpected } = await drainQueue(bases(), Q, after, 180_000);
    const back = [...seen.keys()].filter((b) => before.has(b));
    console.log(`purge race: ${before.size} before (purged ${purged.body.purged} copies), ${after.size} after; ${back.length} came back, ${unexpected.length} unexpected deliveries`);
    expect(back).toEqual([]);
    expect([...after].filter((b) => !seen.has(b))).toEqual([]);
    await restart(0);
    await waitLive(3);
    // Sent during the purge: either purged or delivered, never both later.
    const late = await drainQueue(bases(), Q, new Set(), 5_000);
    expect([...late.seen.keys()].filter((b) => before.has(b) || after.has(b))).toEqual([]);
    expect(hostLogs()).not.toMatch(/too many results|unhandled rejection/);
  }, 600_000);
});
