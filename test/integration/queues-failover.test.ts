/**
 * Replicated queues under host failure, on real 3-node NATS with 3 queue-host
 * sidecars and 2 client sidecars as processes (lease TTL 1 s):
 * kill -9 during a burst of sends and during receives (nothing acknowledged is
 * lost or stuck beyond lease TTL + visibility timeout), a delete while a
 * replica host is down (not resurrected when it returns), and recovery of
 * every host's state from JetStream after all hosts are killed.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sleep, WaitAborted, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { call, killQueueProcs, startQueueClient, startQueueHost, type ApiMessage } from '../harness/queues.ts';
import { logDir, signal, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };
const VISIBILITY_S = 2;
const settings = { visibilityTimeout: `${VISIBILITY_S}s` };

describe('replicated queues: host failure', () => {
  let nats: TestNats;
  const hosts = new Map<number, SidecarProc>();
  const clients: SidecarProc[] = [];

  const restart = async (i: number) => {
    const h = await startQueueHost('work', i, nats.urls, settings, env);
    hosts.set(i, h);
    return h;
  };
  const kill = (i: number) => {
    signal(hosts.get(i)!, 'SIGKILL');
  };
  const ordinalOf = (pod: string) => Number(pod.split('-').pop());
  const send = (c: SidecarProc, body: string, replicas?: number) =>
    call<{ messageId: string; replicas: string[] }>(c.url, 'POST', '/v1/queues/work/messages', replicas === undefined ? { body } : { body, replicas });
  /**
   * Sends until acknowledged. A 503 is retryable by contract (a host that just restarted is not
   * placeable until it has loaded, and on a loaded machine a host may miss a heartbeat); any
   * other answer fails the test. What the tests check is that nothing acknowledged is lost.
   */
  const sendAcked = (c: SidecarProc, body: string, replicas?: number) =>
    waitFor(
      `"${body}" to be acknowledged`,
      async () => {
        const r = await send(c, body, replicas);
        if (r.status === 201) return r;
        if (r.status !== 503) throw new WaitAborted(`send of "${body}" answered ${r.status}: ${JSON.stringify(r.body)}`);
        return undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  const receive = (c: SidecarProc, body: unknown) => call<{ messages: ApiMessage[] }>(c.url, 'POST', '/v1/queues/work/receive', body);
  const del = (c: SidecarProc, handle: string) => call(c.url, 'DELETE', `/v1/queues/work/messages/${handle}`);
  const liveHosts = async () => ((await call<{ hosts: string[] }>(clients[0]!.url, 'GET', '/v1/queues/work')).body.hosts ?? []).length;

  /** Receives and deletes until `want` distinct bodies were seen (or the deadline). */
  async function drainAll(want: Set<string>, timeoutMs: number): Promise<{ seen: Set<string>; deliveries: number }> {
    const seen = new Set<string>();
    let deliveries = 0;
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline && [...want].some((b) => !seen.has(b))) {
      const r = await receive(clients[deliveries % 2]!, { maxMessages: 10, waitSeconds: 1 });
      if (r.status !== 200) {
        await sleep(100);
        continue;
      }
      for (const m of r.body.messages) {
        deliveries++;
        seen.add(m.body);
        await del(clients[0]!, m.receiptHandle);
      }
    }
    return { seen, deliveries };
  }

  beforeAll(async () => {
    nats = await startNats(3);
    await Promise.all([0, 1, 2].map(restart));
    clients.push(...(await Promise.all([startQueueClient('qf-c0', nats.urls, env), startQueueClient('qf-c1', nats.urls, env)])));
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    console.log(`sidecar logs in ${logDir}`);
  }, 400_000);

  afterAll(async () => {
    await killQueueProcs();
    await nats?.dispose();
  }, 30_000);

  it('loses no acknowledged message when a host is killed -9 during a burst of sends', async () => {
    const acked = new Map<string, string[]>();
    let failures = 0;
    let n = 0;
    let stop = false;
    const sender = async (c: SidecarProc) => {
      while (!stop) {
        const body = `burst-${n++}`;
        const r = await send(c, body).catch(() => undefined);
        if (r?.status === 201) acked.set(body, r.body.replicas);
        else failures++;
      }
    };
    const senders = [sender(clients[0]!), sender(clients[1]!), sender(clients[0]!), sender(clients[1]!)];
    await waitFor('100 acknowledged sends', async () => (acked.size >= 100 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20 });
    kill(1);
    const killedAt = performance.now();
    await waitFor('100 more acknowledged sends after the kill', async () => (acked.size >= 200 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20 });
    stop = true;
    await Promise.all(senders);
    console.log(`burst: ${acked.size} acknowledged, ${failures} refused (kill at ${Math.round(performance.now() - killedAt)} ms before the end)`);
    for (const replicas of acked.values()) {
      expect(replicas).toHaveLength(2);
      expect(new Set(replicas).size).toBe(2);
    }
    const { seen, deliveries } = await drainAll(new Set(acked.keys()), 60_000);
    const missing = [...acked.keys()].filter((b) => !seen.has(b));
    console.log(`drain: ${seen.size} distinct received, ${deliveries - seen.size} duplicate deliveries, ${missing.length} missing`);
    expect(missing).toEqual([]);
    expect(deliveries - seen.size).toBeLessThanOrEqual(acked.size);
    await restart(1);
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    // Nothing resurrects from the restarted host.
    expect((await receive(clients[0]!, { maxMessages: 10, waitSeconds: 3 })).body.messages).toEqual([]);
  }, 240_000);

  it('redelivers in-flight messages of a killed host within lease TTL + visibility timeout', async () => {
    const bodies = Array.from({ length: 20 }, (_, i) => `inflight-${i}`);
    for (const b of bodies) expect((await sendAcked(clients[0]!, b)).status).toBe(201);
    const got: ApiMessage[] = [];
    while (got.length < bodies.length) got.push(...(await receive(clients[0]!, { maxMessages: 10, waitSeconds: 2 })).body.messages);
    // Kill the host that holds the most of them, with nothing deleted.
    const counts = new Map<number, number>();
    for (const m of got) {
      const holder = ordinalOf(m.replicas[0]!);
      counts.set(holder, (counts.get(holder) ?? 0) + 1);
    }
    const victim = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
    kill(victim);
    const killedAt = performance.now();
    const { seen } = await drainAll(new Set(bodies), 30_000);
    const took = performance.now() - killedAt;
    console.log(`in-flight after kill -9 of work-${victim}: all ${seen.size} back after ${Math.round(took)} ms (lease 1 s + visibility ${VISIBILITY_S} s)`);
    expect(bodies.filter((b) => !seen.has(b))).toEqual([]);
    await restart(victim);
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
  }, 240_000);

  it('a consumer that stops at its first empty short poll right after a kill -9 still gets every message', async () => {
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    const bodies = Array.from({ length: 30 }, (_, i) => `short-poll-${i}`);
    for (const b of bodies) expect((await sendAcked(clients[0]!, b)).status).toBe(201);
    kill(0);
    const seen = new Set<string>();
    for (;;) {
      const r = await receive(clients[1]!, { maxMessages: 10, waitSeconds: 0 });
      expect(r.status).toBe(200);
      if (r.body.messages.length === 0) break;
      for (const m of r.body.messages) {
        seen.add(m.body);
        await del(clients[1]!, m.receiptHandle);
      }
    }
    expect(bodies.filter((b) => !seen.has(b))).toEqual([]);
    await restart(0);
  }, 240_000);

  it('does not resurrect a message deleted while one of its replica hosts was down', async () => {
    const s = await sendAcked(clients[0]!, 'deleted-while-down');
    expect(s.status).toBe(201);
    const [primary, standby] = s.body.replicas.map(ordinalOf) as [number, number];
    kill(standby);
    await waitFor('2 live hosts', async () => ((await liveHosts()) === 2 ? true : undefined), { timeoutMs: 90_000 });
    const tooMany = await send(clients[1]!, 'three replicas', 3);
    expect(tooMany.status).toBe(503);
    expect(tooMany.body).toMatchObject({ error: { code: 'NOT_ENOUGH_HOSTS', retryable: true } });
    const r = await receive(clients[0]!, { maxMessages: 1, waitSeconds: 5 });
    expect(r.body.messages[0]?.body).toBe('deleted-while-down');
    expect((await del(clients[0]!, r.body.messages[0]!.receiptHandle)).status).toBe(204);
    await restart(standby);
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    // With the primary gone, the returned standby would promote its copy if the delete had not been applied.
    kill(primary);
    await sleep(3_000);
    const after = await receive(clients[1]!, { maxMessages: 10, waitSeconds: 3 });
    expect(after.body.messages.map((m) => m.body)).toEqual([]);
    await restart(primary);
  }, 240_000);

  it('hands a gracefully stopped host’s messages over at once (SIGTERM), losing none', async () => {
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    const bodies = Array.from({ length: 20 }, (_, i) => `graceful-${i}`);
    for (const b of bodies) expect((await sendAcked(clients[0]!, b)).status).toBe(201);
    const victim = hosts.get(2)!;
    signal(victim, 'SIGTERM');
    await new Promise<void>((resolve) => (victim.child.exitCode !== null || victim.child.signalCode !== null ? resolve() : victim.child.once('exit', () => resolve())));
    expect(victim.child.exitCode).toBe(0);
    const { seen } = await drainAll(new Set(bodies), 60_000);
    expect(bodies.filter((b) => !seen.has(b))).toEqual([]);
    await restart(2);
  }, 240_000);

  it('recovers every host’s messages from JetStream after all hosts are killed', async () => {
    await waitFor('3 live hosts', async () => ((await liveHosts()) === 3 ? true : undefined), { timeoutMs: 90_000 });
    const bodies = Array.from({ length: 30 }, (_, i) => `durable-${i}`);
    for (const [i, b] of bodies.entries()) expect((await sendAcked(clients[i % 2]!, b, 1 + (i % 3))).status).toBe(201);
    for (const i of [0, 1, 2]) kill(i);
    await sleep(500);
    await Promise.all([0, 1, 2].map(restart));
    const { seen } = await drainAll(new Set(bodies), 60_000);
    expect(bodies.filter((b) => !seen.has(b))).toEqual([]);
  }, 300_000);
});
