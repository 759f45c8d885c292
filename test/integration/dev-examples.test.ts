/**
 * `castellan dev` on the shipped examples/castellan.dev.yaml (what `npm start`
 * runs), end to end through the client sidecar: the counter (storage and an
 * alarm), the chat room (transactions and listing), the jobs queue with its
 * worker (which posts into a chat room), and every counter host killed with
 * -9 at once: restarted, and the counter keeps its value.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, waitFor } from '../../common/net.ts';
import { alive, http, postJson, startDev, type DevRun } from './dev-harness.ts';

describe('castellan dev on examples/castellan.dev.yaml', () => {
  const stateDir = join(mkdtempSync(join(tmpdir(), 'castellan-dev-examples-')), 'state');
  let port: number;
  let base: string;
  let dev: DevRun;
  const run = `r${Date.now().toString(36)}`;

  beforeAll(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    dev = startDev(['-f', 'examples/castellan.dev.yaml', '--port', String(port)], stateDir);
    await dev.ready();
  }, 180_000);

  afterAll(async () => {
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  it('runs the example processes', () => {
    const names = dev.state().processes.map((p) => `${p.name}:${p.role}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'counter-0:object-host', 'counter-1:object-host', 'counter-2:object-host',
        'chat-0:object-host', 'chat-1:object-host',
        'jobs-0:queue-host', 'jobs-1:queue-host', 'jobs-2:queue-host',
        'worker-0:app', 'client:client',
      ]),
    );
  });

  it('serves the counter with durable storage and an alarm', async () => {
    const id = `${run}-alice`;
    for (const expected of [1, 2, 3]) {
      const r = await http(`${base}/v1/objects/counter/${id}/increment`, { method: 'POST' });
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ value: expected });
    }
    expect((await http(`${base}/v1/objects/counter/${id}/`)).body).toEqual({ value: 3, alarms: 0 });
    expect((await postJson(`${base}/v1/objects/counter/${id}/alarm-in`, { ms: 500 })).status).toBeLessThan(300);
    await waitFor(
      'the alarm to fire',
      async () => {
        const r = await http(`${base}/v1/objects/counter/${id}/`);
        return (r.body as { alarms?: number }).alarms === 1 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
  }, 60_000);

  it('keeps a chat room in storage and lists its history', async () => {
    const room = `${run}-lobby`;
    expect((await postJson(`${base}/v1/objects/chat/${room}/messages`, { user: 'ann', text: 'hello' })).body).toEqual({ seq: 1 });
    expect((await postJson(`${base}/v1/objects/chat/${room}/messages`, { user: 'bob', text: 'hi ann' })).body).toEqual({ seq: 2 });
    const all = (await http(`${base}/v1/objects/chat/${room}/messages`)).body as { messages: { seq: number; user: string; text: string }[]; more: boolean };
    expect(all.messages.map((m) => [m.seq, m.user, m.text])).toEqual([[1, 'ann', 'hello'], [2, 'bob', 'hi ann']]);
    expect(all.more).toBe(false);
    const page = (await http(`${base}/v1/objects/chat/${room}/messages?after=1&limit=1`)).body as { messages: { seq: number }[] };
    expect(page.messages.map((m) => m.seq)).toEqual([2]);
    expect((await http(`${base}/v1/objects/chat/${room}`)).body).toEqual({ room, messages: 2 });
    expect((await postJson(`${base}/v1/objects/chat/${room}/messages`, { user: 'x' })).status).toBe(400);
  }, 60_000);

  it('delivers a queued job to the worker, which posts it to a chat room and deletes it', async () => {
    const room = `${run}-from-jobs`;
    const sent = await postJson(`${base}/v1/queues/jobs/messages`, { body: JSON.stringify({ task: 'chat', room, text: 'made by a job' }) });
    expect(sent.status).toBe(201);
    const { messageId, replicas } = sent.body as { messageId: string; replicas: string[] };
    expect(replicas).toHaveLength(2);
    for (const r of replicas) expect(r).toMatch(/^jobs-[0-2]$/);
    const history = await waitFor(
      'the worker to post the job into the chat room',
      async () => {
        const r = (await http(`${base}/v1/objects/chat/${room}/messages`)).body as { messages: { user: string; text: string }[] };
        return r.messages.length > 0 ? r.messages : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(history).toEqual([expect.objectContaining({ user: expect.stringMatching(/^worker-/), text: 'made by a job' })]);
    await waitFor(`the worker to delete ${messageId}`, async () => (new RegExp(`job ${messageId} .*deleted`).test(dev.output()) ? true : undefined), { timeoutMs: 30_000 });
    await waitFor(
      'the queue to be empty',
      async () => {
        const s = (await http(`${base}/v1/queues/jobs`)).body as { approximateMessages: number; approximateInFlight: number; replicaCount: number; hosts: string[] };
        expect(s.replicaCount).toBe(2);
        expect(s.hosts).toHaveLength(3);
        return s.approximateMessages === 0 && s.approximateInFlight === 0 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
  }, 120_000);

  it('restarts every counter host killed with -9 and the counter keeps its value', async () => {
    const id = `${run}-survivor`;
    for (let i = 0; i < 2; i++) expect((await http(`${base}/v1/objects/counter/${id}/increment`, { method: 'POST' })).status).toBe(200);
    const hosts = dev.state().processes.filter((p) => p.role === 'object-host' && p.class === 'counter');
    for (const h of hosts) process.kill(h.pid, 'SIGKILL');
    const value = await waitFor(
      'the counter to be served again',
      async () => {
        const r = await http(`${base}/v1/objects/counter/${id}/increment`, { method: 'POST' }, 10_000);
        return r.status === 200 ? (r.body as { value: number }).value : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // 3, or more if an attempt during the restart was executed but its answer lost; never a reset counter.
    expect(value).toBeGreaterThanOrEqual(3);
    const now = dev.state().processes.filter((p) => p.role === 'object-host' && p.class === 'counter');
    for (const h of now) {
      expect(hosts.map((x) => x.pid)).not.toContain(h.pid);
      expect(alive(h.pid)).toBe(true);
    }
  }, 120_000);
});
