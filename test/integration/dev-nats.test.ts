/**
 * `castellan dev` with `nats: {embedded: {servers: 3}}`: three nats-server
 * processes, one killed with -9 and restarted while objects and queues keep
 * working; then Ctrl-C as a terminal sends it (SIGINT to the whole process
 * group), which must stop everything in order without restarting anything.
 */
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, waitFor } from '../../common/net.ts';
import { alive, exitCode, http, pidsMatching, postJson, startDev, type DevRun } from './dev-harness.ts';

describe('castellan dev with 3 embedded NATS servers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-nats-'));
  const stateDir = join(dir, 'state');
  let base: string;
  let dev: DevRun;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'dev.yaml'),
      [
        'nats: {embedded: {servers: 3}}',
        'objects:',
        '  counter: {hosts: 2, app: {command: "node examples/counter/app.js"}}',
        'queues:',
        '  jobs: {hosts: 3, replicaCount: 2}',
        `client: {port: ${port}}`,
        '',
      ].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], stateDir, { detached: true });
    await dev.ready(240_000);
  }, 300_000);

  afterAll(async () => {
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  const natsPid = (i: number): number | undefined => pidsMatching(join(stateDir, 'nats', `n${i}.conf`))[0];
  const increment = async (id: string) => http(`${base}/v1/objects/counter/${id}/increment`, { method: 'POST' }, 20_000);

  it('lists three NATS URLs and serves objects and queues', async () => {
    const urls = dev.state().nats.urls;
    expect(urls).toHaveLength(3);
    expect(new Set(urls).size).toBe(3);
    for (let i = 0; i < 3; i++) expect(natsPid(i)).toBeDefined();
    expect((await increment('n3')).body).toEqual({ value: 1 });
    const sent = await postJson(`${base}/v1/queues/jobs/messages`, { body: 'before' });
    expect(sent.status).toBe(201);
  }, 60_000);

  it('restarts a nats-server killed with -9; objects and queues keep working', async () => {
    const before = natsPid(1)!;
    process.kill(before, 'SIGKILL');
    const after = await waitFor(
      'nats-server n1 restarted',
      async () => {
        const p = natsPid(1);
        return p !== undefined && p !== before && alive(p) ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(after).not.toBe(before);
    expect(dev.output()).toMatch(/nats-server exited; restarting it/);
    const value = await waitFor(
      'the counter to answer',
      async () => {
        const r = await increment('n3');
        return r.status === 200 ? (r.body as { value: number }).value : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(value).toBeGreaterThanOrEqual(2);
    const sent = await waitFor(
      'a send to be acknowledged',
      async () => {
        const r = await postJson(`${base}/v1/queues/jobs/messages`, { body: 'after' });
        return r.status === 201 ? r : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect((sent.body as { replicas: string[] }).replicas).toHaveLength(2);
  }, 150_000);

  it('stops in order on Ctrl-C to the whole process group, restarting nothing', async () => {
    const s = dev.state();
    const pids = [...s.processes.map((p) => p.pid), ...[0, 1, 2].map((i) => natsPid(i)!)];
    const mark = dev.output().length;
    process.kill(-dev.child.pid!, 'SIGINT');
    expect(await exitCode(dev)).toBe(0);
    expect(existsSync(dev.statePath)).toBe(false);
    const after = dev.output().slice(mark);
    expect(after).toMatch(/signal received; stopping everything/);
    expect(after).not.toMatch(/restarting/);
    await waitFor('every process gone', async () => (pids.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 10_000 });
    expect(pidsMatching(stateDir)).toEqual([]);
  }, 90_000);
});
