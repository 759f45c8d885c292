/**
 * `castellan cluster up|down` as a user runs it (SPEC §4): up prints the
 * kubeconfig path under .castellan/cluster and the API answers; down stops
 * every control-plane process and removes the cluster.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { isAlive } from '../../common/children.ts';
import { KubeCluster } from '../../local/kube-cluster.ts';

const run = promisify(execFile);
const cli = join(projectRoot, 'bin', 'castellan.js');


describe('castellan cluster up|down', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'castellan-cluster-'));

  afterAll(async () => {
    await run(process.execPath, [cli, 'cluster', 'down'], { cwd }).catch(() => undefined);
    rmSync(cwd, { recursive: true, force: true });
  }, 90_000);

  it('starts a control plane, prints its kubeconfig, and removes it again', async () => {
    const up = await run(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'cluster', 'up', '--nodes', '0', '--fake-nodes', '2'], {
      cwd,
      timeout: 240_000,
    });
    const kubeconfig = up.stdout.trim();
    expect(kubeconfig).toBe(join(cwd, '.castellan', 'cluster', 'kubeconfig'));
    const nodes = await run(toolPath('kubectl'), ['--kubeconfig', kubeconfig, 'get', 'nodes', '-o', 'name']);
    expect(nodes.stdout.trim().split('\n')).toHaveLength(2);

    const cluster = KubeCluster.attach({ name: 'castellan', workdir: join(cwd, '.castellan', 'cluster', 'kwok'), kubeconfig });
    const pids = cluster.pids();
    // etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok-controller
    expect(pids.length).toBeGreaterThanOrEqual(5);
    expect(pids.every(isAlive)).toBe(true);

    await run(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'cluster', 'down'], { cwd, timeout: 90_000 });
    expect(pids.filter(isAlive)).toEqual([]);
    await expect(run(toolPath('kubectl'), ['--kubeconfig', kubeconfig, 'get', 'nodes', '--request-timeout=3s'])).rejects.toThrow();
  }, 330_000);

  it('refuses a bad subcommand with exit code 2', async () => {
    await expect(run(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'cluster', 'sideways'], { cwd })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/expected "up" or "down"/),
    });
  });
});
