/**
 * Two `castellan operator` processes against one real control plane: exactly
 * one leads (holds the Lease) and reconciles, the other stays passive (it
 * writes nothing); when the leader is killed with -9 in the middle of a
 * reconcile the other takes over after the lease duration and finishes it. SIGTERM stops an
 * operator cleanly (exit 0) and releases the Lease.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { exited, spawnOwned, terminate } from '../../common/children.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { installCrds, kwokToleration, startKube, type TestKube } from '../harness/kube.ts';
import { startNats, type TestNats } from '../harness/nats.ts';

const logDir = mkdtempSync(join(tmpdir(), 'castellan-operators-'));

interface OperatorProc {
  identity: string;
  child: ChildProcess;
  port: number;
  log: string;
}

describe('two castellan operator processes', () => {
  let kube: TestKube;
  let nats: TestNats;
  let custom: k8s.CustomObjectsApi;
  let apps: k8s.AppsV1Api;
  let coord: k8s.CoordinationV1Api;
  const procs: OperatorProc[] = [];

  beforeAll(async () => {
    // Both in parallel; whichever started is assigned (and disposed in afterAll) even if the other failed.
    const [k, n] = await Promise.allSettled([startKube(1), startNats(1)]);
    if (k.status === 'fulfilled') kube = k.value;
    if (n.status === 'fulfilled') nats = n.value;
    if (k.status === 'rejected') throw k.reason;
    if (n.status === 'rejected') throw n.reason;
    await installCrds(kube);
    custom = kube.kc.makeApiClient(k8s.CustomObjectsApi);
    apps = kube.kc.makeApiClient(k8s.AppsV1Api);
    coord = kube.kc.makeApiClient(k8s.CoordinationV1Api);
  }, 240_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => terminate(p.child, 'SIGKILL')));
    await nats?.dispose();
    await kube?.dispose();
  }, 120_000);

  async function startOperator(identity: string): Promise<OperatorProc> {
    const port = await freePort();
    const log = join(logDir, `${identity}.log`);
    const fd = openSync(log, 'a');
    let child: ChildProcess;
    try {
      child = spawnOwned(
        process.execPath,
        [
          '--disable-warning=ExperimentalWarning',
          join(projectRoot, 'cli', 'main.ts'),
          'operator',
          '--leader-elect',
          '--identity', identity,
          '--port', String(port),
          '--lease-namespace', 'default',
          '--lease-name', 'castellan-operator',
          '--lease-duration', '4s',
          '--renew-deadline', '3s',
          '--retry-period', '500ms',
          '--sidecar-image', 'example.invalid/castellan:test',
        ],
        {
          stdio: ['ignore', fd, fd],
          env: { ...process.env, KUBECONFIG: kube.kubeconfig, CASTELLAN_NATS_URL: nats.urls.join(','), CASTELLAN_LOG_LEVEL: 'info' },
        },
      );
    } finally {
      closeSync(fd);
    }
    const p = { identity, child, port, log };
    procs.push(p);
    await waitFor(`${identity} /healthz`, async () => ((await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    return p;
  }

  const leaderOf = async (p: OperatorProc): Promise<boolean> =>
    ((await (await fetch(`http://127.0.0.1:${p.port}/leader`)).json()) as { leader: boolean }).leader;
  const holder = async (): Promise<string | undefined> => {
    try {
      return (await coord.readNamespacedLease({ name: 'castellan-operator', namespace: 'default' })).spec?.holderIdentity ?? undefined;
    } catch {
      return undefined;
    }
  };
  const reconciles = async (p: OperatorProc): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text();
    return [...text.matchAll(/^castellan_operator_reconciles_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };
  const createObject = (name: string) =>
    custom.createNamespacedCustomObject({
      group: 'castellan.dev',
      version: 'v1alpha1',
      namespace: 'default',
      plural: 'durableobjects',
      body: {
        apiVersion: 'castellan.dev/v1alpha1',
        kind: 'DurableObject',
        metadata: { name },
        spec: { appPort: 8080, replicas: 1, storage: { replicas: 1 }, template: { spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }], tolerations: [kwokToleration] } } },
      },
    });
  const reconciled = (name: string, timeoutMs: number) =>
    waitFor(
      `DurableObject ${name} to be reconciled`,
      async () => {
        const sts = await apps.readNamespacedStatefulSet({ name, namespace: 'default' }).catch(() => undefined);
        const cr = (await custom.getNamespacedCustomObject({ group: 'castellan.dev', version: 'v1alpha1', namespace: 'default', plural: 'durableobjects', name })) as {
          metadata: { generation: number };
          status?: { observedGeneration?: number };
        };
        return sts !== undefined && cr.status?.observedGeneration === cr.metadata.generation ? true : undefined;
      },
      { timeoutMs, intervalMs: 300 },
    );

  it('elects one leader; the other stays passive; kill -9 of the leader hands over', async () => {
    const a = await startOperator('op-a');
    await waitFor('op-a to lead', async () => ((await leaderOf(a)) ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    const b = await startOperator('op-b');
    expect(await holder()).toBe('op-a');

    await createObject('first');
    await reconciled('first', 90_000);
    expect(await leaderOf(b)).toBe(false);
    expect(await reconciles(b)).toBe(0);
    expect(await reconciles(a)).toBeGreaterThan(0);

    // Kill the leader right after a new resource appears: mid-reconcile (or before it started).
    await createObject('second');
    await new Promise((r) => setTimeout(r, 150));
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await exited(a.child);
    await waitFor('op-b to lead', async () => ((await leaderOf(b)) ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    // A crashed holder is replaced only once its lease (4 s) expired on the successor's clock.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(3_000);
    expect(await holder()).toBe('op-b');
    await reconciled('second', 90_000);
    // The old leader may have finished 'second' before it died; the new one still reconciles
    // every resource once its caches have synced (level-triggered), so wait for that.
    await waitFor('op-b to reconcile', async () => ((await reconciles(b)) > 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 300 });
  }, 240_000);

  it('stops cleanly on SIGTERM (exit 0) and a waiting candidate takes over', async () => {
    const b = procs.find((p) => p.identity === 'op-b')!;
    const c = await startOperator('op-c');
    expect(await leaderOf(c)).toBe(false);
    await terminate(b.child, 'SIGTERM', 15_000);
    expect(b.child.exitCode).toBe(0);
    await waitFor('op-c to lead', async () => ((await leaderOf(c)) ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    expect(await holder()).toBe('op-c');
    await createObject('third');
    await reconciled('third', 90_000);
    expect(readFileSync(c.log, 'utf8')).toMatch(/became leader/);
  }, 150_000);
});
