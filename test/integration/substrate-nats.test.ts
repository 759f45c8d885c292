/**
 * Proves the NATS substrate is real and fit for Castellan's guarantees:
 * an R3 JetStream stream survives the loss of a node and a restarted node
 * catches up; and compare-and-set publishes (the basis of fencing) admit
 * exactly one winner among concurrent writers.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { getJson, sleep, waitFor } from '../../common/net.ts';
import { startNats, type TestNats } from '../harness/nats.ts';


const enc = new TextEncoder();
const dec = new TextDecoder();

/** Publishes with retries while a new stream leader is elected. */
async function publishEventually(js: JetStreamClient, subject: string, data: string): Promise<number> {
  return waitFor(`publish to ${subject}`, async () => (await js.publish(subject, enc.encode(data), { timeout: 2_000 })).seq, {
    timeoutMs: 20_000,
    intervalMs: 200,
  });
}

interface StreamDetail {
  name: string;
  state: { messages: number; last_seq: number };
}
interface JszAccounts {
  account_details?: { stream_detail?: StreamDetail[] }[];
}

/** The stream as stored by one specific server (its own replica), from the monitor endpoint. */
async function replicaState(monitorPort: number, stream: string): Promise<StreamDetail['state'] | undefined> {
  const jsz = (await getJson(`http://127.0.0.1:${monitorPort}/jsz?accounts=true&streams=true`)) as JszAccounts | undefined;
  for (const acc of jsz?.account_details ?? []) {
    for (const s of acc.stream_detail ?? []) if (s.name === stream) return s.state;
  }
  return undefined;
}

describe('NATS JetStream 3-node cluster', () => {
  let nats: TestNats;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await startNats(3);
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    await nats?.dispose();
  }, 30_000);

  it('has a meta leader and three distinct servers', async () => {
    const leader = await nats.cluster.metaLeader();
    expect(['n0', 'n1', 'n2']).toContain(leader);
    expect(new Set(nats.urls).size).toBe(3);
  });

  it('keeps an R3 stream writable when a node dies, and the restarted node catches up', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'SUBSTRATE', subjects: ['substrate.>'], num_replicas: 3 });
    const js = jetstream(nc);
    for (let i = 0; i < 10; i++) await publishEventually(js, 'substrate.a', `before-${i}`);

    // Kill the stream's leader: the hardest case, a new leader must be elected.
    const info = await jsm.streams.info('SUBSTRATE');
    const leaderName = info.cluster?.leader;
    const victim = nats.cluster.nodes.find((n) => n.name === leaderName) ?? nats.cluster.nodes[0]!;
    await nats.cluster.kill(victim.index);

    for (let i = 0; i < 10; i++) await publishEventually(js, 'substrate.a', `during-${i}`);
    const during = await jsm.streams.info('SUBSTRATE');
    expect(during.state.messages).toBe(20);
    expect(during.cluster?.leader).not.toBe(victim.name);

    await nats.cluster.restart(victim.index);
    await waitFor(
      `${victim.name} to catch up`,
      async () => ((await replicaState(victim.monitorPort, 'SUBSTRATE'))?.messages === 20 ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 250 },
    );

    const last = await jsm.streams.getMessage('SUBSTRATE', { last_by_subj: 'substrate.a' });
    expect(dec.decode(last?.data)).toBe('during-9');
  }, 90_000);

  it('admits exactly one of 5 concurrent compare-and-set publishes, 50 times in a row (fencing)', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FENCE', subjects: ['fence.>'], num_replicas: 3 });
    const js = jetstream(nc);
    // Leadership settles after the earlier restart; make sure the stream answers.
    await publishEventually(js, 'fence.warmup', 'x');

    const winners: number[] = [];
    for (let trial = 0; trial < 50; trial++) {
      const subject = `fence.t${trial}`;
      const first = await js.publish(subject, enc.encode('init'));
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, w) =>
          js.publish(subject, enc.encode(`writer-${w}`), { expect: { lastSubjectSequence: first.seq } }),
        ),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      winners.push(ok.length);
      for (const r of results) {
        if (r.status === 'rejected') expect(String(r.reason)).toMatch(/wrong last sequence/i);
      }
    }
    expect(winners).toEqual(Array(50).fill(1));
  }, 120_000);

  it('can stop and continue a node without losing the cluster', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'PAUSE', subjects: ['pause.>'], num_replicas: 3 });
    const js = jetstream(nc);
    // Stop a node this client is not connected to (a frozen server holds its
    // clients' sockets open; the client-side case is covered by ping settings).
    const node = nats.cluster.nodes.find((n) => n.name !== nc.info?.server_name)!;
    nats.cluster.stop(node.index);
    try {
      for (let i = 0; i < 5; i++) await publishEventually(js, 'pause.a', `p-${i}`);
    } finally {
      nats.cluster.cont(node.index);
    }
    await sleep(100);
    await waitFor(`${node.name} to catch up after SIGCONT`, async () => ((await replicaState(node.monitorPort, 'PAUSE'))?.messages === 5 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 250,
    });
  }, 90_000);
});
