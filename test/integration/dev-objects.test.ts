/**
 * Durable objects through `castellan dev` (SPEC §4): three object hosts, each
 * a sidecar process with its own app process, called through the client
 * sidecar; a host killed with -9 is routed around and restarted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { terminate } from '../../common/children.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import type { DevState } from '../../local/dev/run.ts';

describe('castellan dev with object hosts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-objects-'));
  const stateDir = join(dir, 'state');
  const statePath = join(stateDir, 'state.json');
  let port: number;
  let dev: ChildProcess;
  let output = '';

  beforeAll(async () => {
    port = await freePort();
    const app = join(projectRoot, 'test', 'harness', 'apps', 'counter-app.ts');
    writeFileSync(
      join(dir, 'dev.yaml'),
      [
        'nats: {embedded: {servers: 1}}',
        'objects:',
        `  counter: {hosts: 3, leaseTtl: 1s, app: {command: "${process.execPath} --disable-warning=ExperimentalWarning ${app}"}}`,
        `client: {port: ${port}}`,
        '',
      ].join('\n'),
    );
    dev = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(projectRoot, 'bin', 'castellan.js'), 'dev', '-f', join(dir, 'dev.yaml'), '--state-dir', stateDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    dev.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    await waitFor('state.json', async () => (existsSync(statePath) ? true : undefined), { timeoutMs: 90_000, intervalMs: 200 }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${output.slice(-3000)}`);
    });
  }, 120_000);

  afterAll(async () => {
    if (dev !== undefined) await terminate(dev, 'SIGTERM', 20_000);
  }, 30_000);

  const state = (): DevState => JSON.parse(readFileSync(statePath, 'utf8')) as DevState;
  const increment = async (id: string): Promise<Response> =>
    fetch(`http://127.0.0.1:${port}/v1/objects/counter/${encodeURIComponent(id)}/increment`, { method: 'POST', signal: AbortSignal.timeout(20_000) });

  it('lists every host sidecar and app in the state file', () => {
    const s = state();
    const hosts = s.processes.filter((p) => p.role === 'object-host');
    const apps = s.processes.filter((p) => p.role === 'app');
    expect(hosts.map((p) => p.name).sort()).toEqual(['counter-0', 'counter-1', 'counter-2']);
    expect(apps).toHaveLength(3);
    for (const p of [...hosts, ...apps]) {
      expect(p.class).toBe('counter');
      expect(p.pid).toBeGreaterThan(0);
      expect(p.httpPort).toBeGreaterThan(0);
    }
  });

  it('routes calls for many objects through the client sidecar', async () => {
    for (const id of ['a', 'b.c', 'ünï cödé', 'x*y>z']) {
      const values: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await increment(id);
        expect(res.status).toBe(200);
        values.push(((await res.json()) as { value: number }).value);
      }
      expect(values).toEqual([1, 2, 3]);
    }
  });

  it('keeps serving an object when its host is killed with -9', async () => {
    // Find the owner: the app that answers reports its pid; map it to its host sidecar.
    const res = await increment('survivor');
    const { pid } = (await res.json()) as { pid: number };
    const apps = state().processes.filter((p) => p.role === 'app');
    const ownerApp = apps.find((p) => p.pid === pid);
    expect(ownerApp).toBeDefined();
    const owner = state().processes.find((p) => p.name === ownerApp!.name.replace(/-app$/, ''))!;
    process.kill(owner.pid, 'SIGKILL');
    const t0 = Date.now();
    const answer = await waitFor(
      'the object to be served by another host',
      async () => {
        const r = await increment('survivor');
        if (r.status !== 200) return undefined;
        return (await r.json()) as { pid: number };
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(answer.pid).not.toBe(pid);
    expect(Date.now() - t0).toBeLessThan(10_000);
    await waitFor(
      'the killed host to be restarted',
      async () => {
        const p = state().processes.find((x) => x.name === owner.name)!;
        return p.pid !== owner.pid ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
  }, 60_000);
});
