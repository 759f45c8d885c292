/**
 * `castellan dev` started by someone who never reads its output (a script
 * holding stdout/stderr pipes): a noisy app fills the pipes far beyond their
 * capacity, and castellan dev must keep supervising (restart after kill -9),
 * keep the system serving, and stop cleanly on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exited, terminate } from '../../common/children.ts';
import { freePort, sleep, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { alive, cli, http, stateSchema, type State } from './dev-harness.ts';

describe('castellan dev whose output nobody reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-unread-'));
  const stateDir = join(dir, 'state');
  const statePath = join(stateDir, 'state.json');
  let port: number;
  let dev: ChildProcess;

  beforeAll(async () => {
    port = await freePort();
    // About 1 MB/s of output, against pipes that hold 64 KiB.
    const noisy = `${process.execPath} -e "setInterval(() => console.log('x'.repeat(1000)), 1)"`;
    writeFileSync(join(dir, 'dev.yaml'), [`client: {port: ${port}}`, 'apps:', `  noisy: {command: ${JSON.stringify(noisy)}}`, ''].join('\n'));
    // stdout and stderr are pipes that this test never reads.
    dev = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'dev', '-f', join(dir, 'dev.yaml'), '--state-dir', stateDir], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitFor('state.json', async () => (existsSync(statePath) ? true : undefined), { timeoutMs: 120_000, intervalMs: 250 });
  }, 150_000);

  afterAll(async () => {
    if (dev !== undefined) await terminate(dev, 'SIGKILL', 1_000);
  }, 30_000);

  const state = (): State => stateSchema.parse(JSON.parse(readFileSync(statePath, 'utf8')));

  it('keeps supervising and serving while its output is not read', async () => {
    await sleep(3_000); // megabytes of output by now
    const before = state().processes.find((p) => p.role === 'client')!;
    process.kill(before.pid, 'SIGKILL');
    await waitFor(
      'the client sidecar to be restarted and serving',
      async () => {
        const p = state().processes.find((x) => x.role === 'client')!;
        if (p.pid === before.pid || !alive(p.pid)) return undefined;
        return (await http(`http://127.0.0.1:${port}/readyz`, {}, 2_000)).status === 200 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  }, 60_000);

  it('stops cleanly on SIGTERM', async () => {
    const pids = state().processes.map((p) => p.pid);
    dev.kill('SIGTERM');
    await exited(dev);
    expect(dev.exitCode).toBe(0);
    expect(existsSync(statePath)).toBe(false);
    await waitFor('every child gone', async () => (pids.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 10_000 });
  }, 60_000);
});
