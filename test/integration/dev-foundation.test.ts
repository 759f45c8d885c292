/**
 * `castellan dev` as a user runs it: a real child process tree (embedded
 * nats-server, client sidecar), its state file, restarts and clean shutdown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exited, terminate } from '../../common/children.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import type { DevState } from '../../local/dev/run.ts';

const cli = join(projectRoot, 'bin', 'castellan.js');

function startDev(args: string[]): { child: ChildProcess; output: () => string } {
  let out = '';
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'dev', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  return { child, output: () => out };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('castellan dev (foundation)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-'));
  const stateDir = join(dir, 'state');
  const statePath = join(stateDir, 'state.json');
  let port: number;
  let dev: ReturnType<typeof startDev>;

  beforeAll(async () => {
    port = await freePort();
    writeFileSync(join(dir, 'ok.yaml'), `nats: {embedded: {servers: 1}}\nclient: {port: ${port}}\n`);
    dev = startDev(['-f', join(dir, 'ok.yaml'), '--state-dir', stateDir]);
    await waitFor('state.json', async () => (existsSync(statePath) ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${dev.output()}`);
    });
  }, 90_000);

  afterAll(async () => {
    if (dev !== undefined) await terminate(dev.child, 'SIGTERM', 15_000);
  }, 30_000);

  const state = (): DevState => JSON.parse(readFileSync(statePath, 'utf8')) as DevState;

  it('writes the SPEC state file and serves health on the client port', async () => {
    const s = state();
    expect(s.ready).toBe(true);
    expect(s.nats.urls).toHaveLength(1);
    expect(s.nats.urls[0]).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const client = s.processes.find((p) => p.role === 'client');
    expect(client).toMatchObject({ name: 'client', role: 'client', httpPort: port });
    expect(alive(client!.pid)).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { nats: 'ok' } });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/castellan_sidecar_process_resident_memory_bytes/);
  }, 30_000);

  it('answers unknown routes with the SPEC error JSON', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v0/nothing`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'ROUTE_NOT_FOUND', message: expect.any(String), retryable: false } });
  }, 30_000);

  it('restarts a child killed with -9 and updates the state file', async () => {
    const before = state().processes.find((p) => p.role === 'client')!;
    process.kill(before.pid, 'SIGKILL');
    const after = await waitFor(
      'client restarted',
      async () => {
        const p = state().processes.find((x) => x.role === 'client')!;
        if (p.pid === before.pid || !alive(p.pid)) return undefined;
        const res = await fetch(`http://127.0.0.1:${port}/readyz`);
        return res.ok ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(after.pid).not.toBe(before.pid);
  }, 40_000);

  it('stops every child and removes the state file on SIGTERM', async () => {
    const pids = state().processes.map((p) => p.pid);
    dev.child.kill('SIGTERM');
    await exited(dev.child);
    expect(dev.child.exitCode).toBe(0);
    expect(existsSync(statePath)).toBe(false);
    await waitFor('children gone', async () => (pids.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 5_000 });
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  }, 30_000);

  it.each([
    ['unknown key', 'nats: {embedded: {servers: 1}}\nclients: {}\n', /clients/],
    ['bad server count', 'nats: {embedded: {servers: 2}}\n', /nats/],
    ['bad port', 'client: {port: 70000}\n', /client\.port/],
    ['not YAML', 'client: [1, 2\n', /not valid YAML/],
  ])('exits 2 naming the field for a broken config (%s)', async (_name, text, pattern) => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, text);
    const bad = startDev(['-f', file, '--state-dir', join(dir, 'bad-state')]);
    await exited(bad.child);
    expect(bad.child.exitCode).toBe(2);
    expect(bad.output()).toMatch(pattern);
  }, 30_000);
});
