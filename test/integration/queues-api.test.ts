/**
 * Replicated queues, the API (SPEC §2.3) on real 3-node NATS with 3 queue-host
 * sidecars and a client sidecar, all processes: send/receive/delete, replica
 * lists, visibility, change-visibility, long polling, delay, dedup, batches,
 * purge, counts, DLQ, retention and every 4xx.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sleep, waitFor } from '../../common/net.ts';
import { deleteQueueAssets, ensureQueueAssets } from '../../sidecar/queues/mod.ts';
import { startNats, type TestNats } from '../harness/nats.ts';
import { call, killQueueProcs, startQueueClient, startQueueHost, type ApiMessage } from '../harness/queues.ts';
import { logDir, type SidecarProc } from '../harness/sidecars.ts';

const env = { CASTELLAN_LEASE_TTL: '1s', CASTELLAN_REQUEST_TIMEOUT: '5s', CASTELLAN_UNAVAILABLE_WAIT: '3s' };

describe('replicated queues: API', () => {
  let nats: TestNats;
  const procs: SidecarProc[] = [];
  let client: SidecarProc;
  let c: string;

  const send = (q: string, body: unknown) => call<{ messageId: string; replicas: string[] }>(c, 'POST', `/v1/queues/${q}/messages`, body);
  const receive = (q: string, body: unknown) => call<{ messages: ApiMessage[] }>(c, 'POST', `/v1/queues/${q}/receive`, body);
  const del = (q: string, handle: string) => call(c, 'DELETE', `/v1/queues/${q}/messages/${encodeURIComponent(handle)}`);
  const describeQ = (q: string) => call<Record<string, unknown>>(c, 'GET', `/v1/queues/${q}`);

  async function drain(q: string): Promise<ApiMessage[]> {
    const all: ApiMessage[] = [];
    for (;;) {
      const r = await receive(q, { maxMessages: 10, waitSeconds: 1 });
      expect(r.status).toBe(200);
      if (r.body.messages.length === 0) return all;
      for (const m of r.body.messages) {
        all.push(m);
        expect((await del(q, m.receiptHandle)).status).toBe(204);
      }
    }
  }

  beforeAll(async () => {
    nats = await startNats(3);
    const settings = { visibilityTimeout: '3s', deadLetterQueue: 'jobs-dlq', maxReceiveCount: 3 };
    procs.push(...(await Promise.all([0, 1, 2].map((i) => startQueueHost('jobs', i, nats.urls, settings, env)))));
    procs.push(...(await Promise.all([0, 1].map((i) => startQueueHost('jobs-dlq', i, nats.urls, { hosts: 2, replicaCount: 2 }, env)))));
    procs.push(...(await Promise.all([0, 1, 2].map((i) => startQueueHost('short', i, nats.urls, { messageRetention: '5s', maxMessageBytes: 1024, delay: '2s' }, env)))));
    client = await startQueueClient('q-client', nats.urls, env);
    procs.push(client);
    c = client.url;
    await waitFor('3 live hosts of jobs', async () => ((await describeQ('jobs')).body.hosts as string[] | undefined)?.length === 3 || undefined, { timeoutMs: 30_000 });
    console.log(`sidecar logs in ${logDir}`);
  }, 400_000);

  afterAll(async () => {
    await killQueueProcs();
    await nats?.dispose();
  }, 30_000);

  it('sends, receives once with a receipt handle and deletes', async () => {
    const s = await send('jobs', { body: 'hello', attributes: { kind: 'greeting' } });
    expect(s.status).toBe(201);
    expect(s.body.replicas).toHaveLength(2);
    expect(new Set(s.body.replicas).size).toBe(2);
    const r = await receive('jobs', { maxMessages: 10, waitSeconds: 5 });
    expect(r.status).toBe(200);
    expect(r.body.messages).toHaveLength(1);
    const m = r.body.messages[0]!;
    expect(m).toMatchObject({ messageId: s.body.messageId, body: 'hello', attributes: { kind: 'greeting' }, receiveCount: 1, replicas: s.body.replicas });
    expect(Number.isNaN(Date.parse(m.enqueuedAt))).toBe(false);
    // Invisible while in flight: the standby copy is hidden too.
    expect((await receive('jobs', { maxMessages: 10 })).body.messages).toHaveLength(0);
    expect((await del('jobs', m.receiptHandle)).status).toBe(204);
    const d = await describeQ('jobs');
    expect(d.body).toMatchObject({ name: 'jobs', replicaCount: 2, approximateMessages: 0, approximateInFlight: 0, approximateDelayed: 0 });
  }, 60_000);

  it('honours replicas per message, and refuses more than configured (400) or live (503)', async () => {
    const three = await send('jobs', { body: 'r3', replicas: 3 });
    expect(three.status).toBe(201);
    expect(new Set(three.body.replicas).size).toBe(3);
    const one = await send('jobs', { body: 'r1', replicas: 1 });
    expect(one.body.replicas).toHaveLength(1);
    const four = await send('jobs', { body: 'r4', replicas: 4 });
    expect(four.status).toBe(400);
    expect(four.body).toMatchObject({ error: { code: 'INVALID_REPLICAS', retryable: false } });
    const dlqThree = await send('jobs-dlq', { body: 'x', replicas: 3 });
    expect(dlqThree.status).toBe(400);
    expect((await drain('jobs')).map((m) => m.body).sort()).toEqual(['r1', 'r3']);
  }, 60_000);

  it('returns a message after its visibility timeout with receiveCount+1; change-visibility 0 returns it now', async () => {
    await send('jobs', { body: 'vis' });
    const first = (await receive('jobs', { maxMessages: 1, waitSeconds: 5, visibilityTimeoutSeconds: 1 })).body.messages[0]!;
    expect(first.receiveCount).toBe(1);
    const again = await receive('jobs', { maxMessages: 1, waitSeconds: 10, visibilityTimeoutSeconds: 60 });
    expect(again.body.messages[0]).toMatchObject({ messageId: first.messageId, receiveCount: 2 });
    const h = again.body.messages[0]!.receiptHandle;
    // The stale handle can no longer change visibility.
    const stale = await call(c, 'POST', '/v1/queues/jobs/visibility', { receiptHandle: first.receiptHandle, visibilityTimeoutSeconds: 0 });
    expect(stale.status).toBe(400);
    expect((await call(c, 'POST', '/v1/queues/jobs/visibility', { receiptHandle: h, visibilityTimeoutSeconds: 0 })).status).toBe(204);
    const third = await receive('jobs', { maxMessages: 1, waitSeconds: 5 });
    expect(third.body.messages[0]).toMatchObject({ messageId: first.messageId, receiveCount: 3 });
    expect((await del('jobs', third.body.messages[0]!.receiptHandle)).status).toBe(204);
  }, 60_000);

  it('long-polls until a send wakes it', async () => {
    const started = performance.now();
    const pending = receive('jobs', { maxMessages: 1, waitSeconds: 20 });
    await sleep(1_500);
    await send('jobs', { body: 'wake' });
    const r = await pending;
    const took = performance.now() - started;
    expect(r.body.messages.map((m) => m.body)).toEqual(['wake']);
    expect(took).toBeLessThan(19_000);
    await del('jobs', r.body.messages[0]!.receiptHandle);
    const empty = performance.now();
    expect((await receive('jobs', { maxMessages: 1, waitSeconds: 2 })).body.messages).toHaveLength(0);
    expect(performance.now() - empty).toBeGreaterThanOrEqual(1_900);
  }, 60_000);

  it('moves a message to the dead-letter queue after maxReceiveCount, keeping body and attributes', async () => {
    const s = await send('jobs', { body: 'poison', attributes: { a: '1' } });
    for (let i = 1; i <= 3; i++) {
      const r = await receive('jobs', { maxMessages: 1, waitSeconds: 10, visibilityTimeoutSeconds: 1 });
      expect(r.body.messages[0]).toMatchObject({ messageId: s.body.messageId, receiveCount: i });
    }
    const dl = await waitFor('the message in the DLQ', async () => {
      const r = await receive('jobs-dlq', { maxMessages: 1, waitSeconds: 2 });
      return r.body.messages[0];
    }, { timeoutMs: 20_000 });
    expect(dl).toMatchObject({ body: 'poison', attributes: { a: '1' }, receiveCount: 1 });
    await del('jobs-dlq', dl.receiptHandle);
    expect((await receive('jobs', { maxMessages: 1, waitSeconds: 2 })).body.messages).toHaveLength(0);
  }, 60_000);

  it('holds back delayed messages (per message and queue delay) and counts them', async () => {
    await send('jobs', { body: 'later', delaySeconds: 2 });
    await send('short', { body: 'queue-delayed' });
    const d = await describeQ('jobs');
    expect(d.body.approximateDelayed).toBe(1);
    expect((await receive('jobs', { maxMessages: 1 })).body.messages).toHaveLength(0);
    expect((await receive('short', { maxMessages: 1 })).body.messages).toHaveLength(0);
    const later = await receive('jobs', { maxMessages: 1, waitSeconds: 10 });
    expect(later.body.messages[0]?.body).toBe('later');
    await del('jobs', later.body.messages[0]!.receiptHandle);
    const qd = await receive('short', { maxMessages: 1, waitSeconds: 10 });
    expect(qd.body.messages[0]?.body).toBe('queue-delayed');
    await del('short', qd.body.messages[0]!.receiptHandle);
  }, 60_000);

  it('drops a second send with the same deduplicationId within the window', async () => {
    const a = await send('jobs', { body: 'once', deduplicationId: 'order-42' });
    const b = await send('jobs', { body: 'once', deduplicationId: 'order-42' });
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.messageId).toBe(a.body.messageId);
    expect((await drain('jobs')).map((m) => m.body)).toEqual(['once']);
  }, 60_000);

  it('drops messages past the retention', async () => {
    await send('short', { body: 'old', delaySeconds: 0 });
    await waitFor('retention to drop it', async () => ((await describeQ('short')).body.approximateMessages === 0 ? true : undefined), { timeoutMs: 20_000 });
    expect((await receive('short', { maxMessages: 1 })).body.messages).toHaveLength(0);
  }, 60_000);

  it('sends and deletes in batches with per-entry results, and purges', async () => {
    const entries = Array.from({ length: 100 }, (_, i) => ({ id: `e${i}`, body: `b${i}` }));
    entries[5] = { id: 'e5', body: 'x'.repeat(300_000) };
    const s = await call<{ successful: { id: string; messageId: string; replicas: string[] }[]; failed: { id: string; status: number; code: string }[] }>(c, 'POST', '/v1/queues/jobs/batch/send', { entries });
    expect(s.status).toBe(200);
    expect(s.body.successful).toHaveLength(99);
    expect(s.body.failed).toEqual([expect.objectContaining({ id: 'e5', status: 413, code: 'PAYLOAD_TOO_LARGE' })]);
    const got: ApiMessage[] = [];
    while (got.length < 20) got.push(...(await receive('jobs', { maxMessages: 10, waitSeconds: 2 })).body.messages);
    const del20 = await call<{ successful: { id: string }[]; failed: { id: string; code: string }[] }>(c, 'POST', '/v1/queues/jobs/batch/delete', {
      entries: [...got.slice(0, 20).map((m, i) => ({ id: `d${i}`, receiptHandle: m.receiptHandle })), { id: 'bad', receiptHandle: 'garbage' }],
    });
    expect(del20.body.successful).toHaveLength(20);
    expect(del20.body.failed).toEqual([expect.objectContaining({ id: 'bad', code: 'INVALID_RECEIPT_HANDLE' })]);
    await waitFor('79 messages counted', async () => {
      const d = (await describeQ('jobs')).body;
      return (d.approximateMessages as number) + (d.approximateInFlight as number) === 79 ? true : undefined;
    }, { timeoutMs: 10_000 });
    const p = await call<{ purged: number }>(c, 'POST', '/v1/queues/jobs/purge');
    expect(p.status).toBe(200);
    const d = (await describeQ('jobs')).body;
    expect(d).toMatchObject({ approximateMessages: 0, approximateInFlight: 0, approximateDelayed: 0 });
    const tooMany = await call(c, 'POST', '/v1/queues/jobs/batch/send', { entries: Array.from({ length: 101 }, (_, i) => ({ id: `e${i}`, body: 'x' })) });
    expect(tooMany.status).toBe(400);
    const dup = await call(c, 'POST', '/v1/queues/jobs/batch/send', { entries: [{ id: 'a', body: 'x' }, { id: 'a', body: 'y' }] });
    expect(dup.status).toBe(400);
  }, 90_000);

  it('discovers a queue the operator declared (ensureQueueAssets) and forgets it after deleteQueueAssets', async () => {
    const nc = await nats.connect();
    const target = { prefix: 'castellan', namespace: 'default' };
    const spec = { name: 'declared', hosts: 2, replicaCount: 2, visibilityTimeoutMs: 10_000, messageRetentionMs: 3_600_000, maxMessageBytes: 1000, delayMs: 0 };
    await ensureQueueAssets(nc, target, spec);
    await ensureQueueAssets(nc, target, { ...spec, visibilityTimeoutMs: 20_000 }); // idempotent update
    const d = await waitFor('the declared queue', async () => {
      const r = await describeQ('declared');
      return r.status === 200 ? r.body : undefined;
    }, { timeoutMs: 10_000 });
    expect(d).toMatchObject({ name: 'declared', hosts: [], replicaCount: 2, approximateMessages: 0, visibilityTimeoutSeconds: 20 });
    const noHosts = await send('declared', { body: 'x' });
    expect(noHosts.status).toBe(503);
    expect(noHosts.body).toMatchObject({ error: { retryable: true } });
    expect((await send('declared', { body: 'x'.repeat(1001) })).status).toBe(413);
    await deleteQueueAssets(nc, target, 'declared');
    await waitFor('the deleted queue to be unknown', async () => ((await describeQ('declared')).status === 404 ? true : undefined), { timeoutMs: 20_000 });
    expect((await describeQ('jobs')).status).toBe(200);
  }, 60_000);

  it('answers bad input with SPEC-shaped 4xx JSON', async () => {
    const cases: [string, string, unknown, number, string, string?][] = [
      ['POST', '/v1/queues/nope/messages', { body: 'x' }, 404, 'QUEUE_NOT_FOUND'],
      ['GET', '/v1/queues/nope', undefined, 404, 'QUEUE_NOT_FOUND'],
      ['POST', '/v1/queues/nope/receive', {}, 404, 'QUEUE_NOT_FOUND'],
      ['GET', '/v1/queues/Not_A_Name', undefined, 404, 'QUEUE_NOT_FOUND'],
      ['POST', '/v1/queues/jobs/messages', undefined, 400, 'BAD_REQUEST', '{not json'],
      ['POST', '/v1/queues/jobs/messages', { body: 5 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', {}, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', { body: 'x', replicas: 0 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', { body: 'x', replicas: 'two' }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', { body: 'x', delaySeconds: 901 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', { body: 'x', attributes: { a: 1 } }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/messages', { body: 'x'.repeat(262_145) }, 413, 'PAYLOAD_TOO_LARGE'],
      ['POST', '/v1/queues/short/messages', { body: 'x'.repeat(1025) }, 413, 'PAYLOAD_TOO_LARGE'],
      ['POST', '/v1/queues/jobs/receive', { maxMessages: 11 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/receive', { waitSeconds: 21 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/receive', { visibilityTimeoutSeconds: -1 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/queues/jobs/receive', [], 400, 'BAD_REQUEST'],
      ['DELETE', '/v1/queues/jobs/messages/garbage', undefined, 400, 'INVALID_RECEIPT_HANDLE'],
      ['DELETE', '/v1/queues/jobs/messages/YWJj.AAAAAAAAAAAAAAAAAAAAAA', undefined, 400, 'INVALID_RECEIPT_HANDLE'],
      ['POST', '/v1/queues/jobs/visibility', { receiptHandle: 'garbage', visibilityTimeoutSeconds: 1 }, 400, 'INVALID_RECEIPT_HANDLE'],
      ['POST', '/v1/queues/jobs/visibility', { receiptHandle: 'x' }, 400, 'BAD_REQUEST'],
      ['PUT', '/v1/queues/jobs/messages', { body: 'x' }, 405, 'METHOD_NOT_ALLOWED'],
    ];
    for (const [method, path, body, status, code, raw] of cases) {
      const r = await call<{ error: { code: string; message: string; retryable: boolean } }>(c, method, path, body, raw === undefined ? {} : { raw });
      expect({ method, path, status: r.status, code: r.body?.error?.code }).toEqual({ method, path, status, code: raw !== undefined ? 'INVALID_JSON' : code });
      expect(typeof r.body.error.message).toBe('string');
      expect(typeof r.body.error.retryable).toBe('boolean');
    }
    // A handle of one queue is rejected by another.
    await send('jobs', { body: 'h' });
    const m = (await receive('jobs', { maxMessages: 1, waitSeconds: 5 })).body.messages[0]!;
    expect((await del('short', m.receiptHandle)).status).toBe(400);
    const tampered = m.receiptHandle.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A'));
    expect((await del('jobs', tampered)).status).toBe(400);
    expect((await del('jobs', m.receiptHandle)).status).toBe(204);
  }, 60_000);

  it('exposes queue metrics', async () => {
    const texts = await Promise.all(procs.slice(0, 3).map(async (p) => (await fetch(`${p.url}/metrics`)).text()));
    const all = texts.join('\n');
    for (const name of ['castellan_queue_sent_total', 'castellan_queue_received_total', 'castellan_queue_deleted_total', 'castellan_queue_dead_lettered_total', 'castellan_queue_replication_seconds_bucket', 'castellan_queue_messages']) {
      expect(all).toContain(name);
    }
    expect(all).toMatch(/castellan_queue_sent_total\{[^}]*queue="jobs"[^}]*\} [1-9]/);
    expect(await (await fetch(`${c}/metrics`)).text()).toMatch(/castellan_queue_requests_total\{[^}]*op="send"/);
  }, 30_000);
});
