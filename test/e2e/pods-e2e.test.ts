/**
 * The user path on real pods (issue 14): a local cluster with two real nodes
 * (kubelet, containerd, runc, CNI bridge, kube-proxy), the images built here
 * (`castellan image build`) imported into them, the CRDs applied server-side,
 * the chart installed with its image values (operator pods with leader
 * election), NATS JetStream as three pods, a DurableObject running the counter
 * app, a ReplicatedQueue, and a caller pod (a client sidecar plus a small proxy
 * the test reaches on the pod IP). One cluster serves every case, in order.
 *
 * What it proves: calls from the caller pod reach the one owner in another
 * pod; `kubectl rollout restart` of the object hosts under continuous calls
 * fails no call (the app's preStop hook drains the sidecar first); a
 * force-deleted owner pod fails over and no acknowledged increment is lost;
 * deleting a queue host under load loses no acknowledged message; deleting the
 * operator leader hands leadership over; and `down` leaves no process, mount,
 * bridge or network namespace behind. The test dials only pod IPs of pods it
 * created.
 *
 * It runs in `npm test` (scripts/test.sh, phase "e2e tests") and needs root,
 * containerd, runc and the CNI plugins (scripts/tools.sh node-runtime): without
 * them it fails, naming what is missing. Every pod has CPU requests: a
 * BestEffort pod's cgroup gets 2 CPU shares of 1024, and a NATS or an app
 * starved that way while a rollout starts pods stalls leases for seconds.
 * The images are reused while their inputs are unchanged (.castellan/images).
 * The numbers it measured are printed at the end (`pods-e2e numbers:`),
 * with, when the rollout failed calls, the directory holding the object
 * hosts' logs of it.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnOwned, terminate } from '../../common/children.ts';
import { sleep, waitFor } from '../../common/net.ts';
import { projectRoot, toolPath } from '../../common/paths.ts';
import { hostBridge } from '../../local/nodes/layout.ts';
import { kubeChains, mountsUnder } from '../../local/nodes/host.ts';
import { processesMatching } from '../../local/nodes/processes.ts';
import { installCrds, startKube, type TestKube } from '../harness/kube.ts';
import { apply, loadImages, natsManifest, natsUrls, pods, waitPodsReady, type PodInfo } from '../harness/pods.ts';

const run = promisify(execFile);
const ns = 'e2e';
const operatorNs = 'castellan-system';

/** The caller pod's proxy: the test's requests to <pod IP>:8080 go to the pod's own sidecar on loopback. */
const proxy = `
const http = require('node:http');
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const r = await fetch('http://127.0.0.1:3600' + req.url, {
        method: req.method,
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
        body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
        signal: AbortSignal.timeout(60000),
      });
      const body = Buffer.from(await r.arrayBuffer());
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
      res.end(body);
    } catch (e) {
      res.writeHead(599, { 'content-type': 'text/plain' });
      res.end(String(e));
    }
  });
}).listen(8080, '0.0.0.0');
`;

/** An idle Node process (its command line names it for the RSS reading). */
const baselineScript = 'setInterval(() => {}, 1 << 30) /* castellan-rss-baseline */';

/** RSS (MiB) of the processes on this machine whose command line contains `pattern`. */
function rssMiB(pattern: string): number[] {
  return processesMatching(pattern).map((pid) => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Math.round((Number(m?.[1] ?? 0) / 1024) * 10) / 10;
  });
}

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

function workloads(): string {
  const env = [
    `{name: CASTELLAN_NATS_URL, value: "${natsUrls.join(',')}"}`,
    '{name: CASTELLAN_ROLE, value: client}',
    '{name: CASTELLAN_ADMIN_PORT, value: "3601"}',
    '{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}',
    '{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}',
  ].join(', ');
  return `apiVersion: v1
kind: Namespace
metadata: {name: ${ns}}
---
apiVersion: castellan.dev/v1alpha1
kind: DurableObject
metadata: {name: counter, namespace: ${ns}}
spec:
  replicas: 3
  appPort: 8080
  storage: {replicas: 3}
  # a 2-core CI machine running all of this (and NATS fsyncing every write) answers heartbeats late: 5 s host leases
  sidecar: {env: [{name: CASTELLAN_LEASE_TTL, value: 5s}]}
  template:
    spec:
      containers:
        - name: app
          image: castellan-examples:dev
          command: [node, examples/counter/app.js]
          resources: {requests: {cpu: 50m, memory: 64Mi}}
---
apiVersion: castellan.dev/v1alpha1
kind: ReplicatedQueue
metadata: {name: jobs, namespace: ${ns}}
spec: {hosts: 3, replicaCount: 2, sidecar: {env: [{name: CASTELLAN_LEASE_TTL, value: 5s}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: caller, namespace: ${ns}, labels: {app: caller}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  containers:
    - name: sidecar
      image: castellan:dev
      command: [castellan, sidecar]
      env: [${env}]
      ports: [{name: admin, containerPort: 3601}]
      readinessProbe: {httpGet: {path: /readyz, port: 3601}, periodSeconds: 2}
      resources: {requests: {cpu: 50m, memory: 96Mi}}
    - name: proxy
      image: castellan-examples:dev
      command: [node, -e, ${JSON.stringify(proxy)}]
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
      resources: {requests: {cpu: 50m, memory: 64Mi}}
    # the same-run baseline for the sidecar's RSS: the image's Node, idle, nothing loaded
    - name: baseline
      image: castellan:dev
      command: [node, -e, ${JSON.stringify(baselineScript)}]
      resources: {requests: {cpu: 5m, memory: 32Mi}}
`;
}

interface Reply {
  status: number;
  body: string;
}

describe('Castellan on real pods: two real nodes, images built here, the chart, NATS as pods', () => {
  let kube: TestKube | undefined;
  let disposed = false;
  let caller: string;
  const dir = mkdtempSync(join(tmpdir(), 'castellan-pods-'));
  const netnsBefore = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  const chainsBefore = kubeChains();
  const numbers: Record<string, unknown> = {};
  /** The rollout's logs stay (their directory is printed) only when it failed calls. */
  let keepLogs = false;

  async function call(method: string, path: string, body?: unknown): Promise<Reply> {
    try {
      const res = await fetch(`${caller}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(90_000),
      });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      return { status: 0, body: String(err) };
    }
  }

  const kubectl = (args: string[], timeoutMs = 60_000): Promise<string> => (kube as TestKube).cluster.kubectl(args, timeoutMs);

  /**
   * The counter host pod whose sidecar has an object active (its admin /metrics on the pod IP):
   * meaningful while e2e-1 is the only object called so far (the force-delete case runs before the rollout).
   */
  async function ownerOf(): Promise<PodInfo> {
    return waitFor('one counter host with an active object', async () => {
      const hosts = (await pods(kube as TestKube, ns, 'castellan.dev/class=counter')).filter((p) => p.ready && !p.deleting);
      const active: PodInfo[] = [];
      for (const p of hosts) {
        const text = await (await fetch(`http://${p.ip}:3601/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
        const n = text
          .split('\n')
          .filter((l) => l.startsWith('castellan_object_active'))
          .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
        if (n > 0) active.push(p);
      }
      return active.length === 1 ? active[0] : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500 });
  }

  beforeAll(async () => {
    const t0 = Date.now();
    kube = await startKube(0, 2);
    numbers.clusterUpMs = Date.now() - t0;
    const t1 = Date.now();
    const built = await loadImages(kube);
    numbers.images = built.images;
    numbers[built.cached ? 'imageLoadMs (cached build)' : 'imageBuildAndLoadMs'] = Date.now() - t1;
    await installCrds(kube);
    await apply(kube, natsManifest());
    const natsPods = await waitPodsReady(kube, 'nats', 'app=nats', 3);
    numbers.natsNodes = [...new Set(natsPods.map((p) => p.node))].length;
    const values = join(dir, 'values.yaml');
    writeFileSync(
      values,
      `image: {repository: castellan, tag: dev}\nnats: {url: "${natsUrls.join(',')}"}\nleaderElection: {leaseDuration: 8s, renewDeadline: 6s, retryPeriod: 1s}\n`,
    );
    await run(
      toolPath('helm'),
      ['install', 'castellan', join(projectRoot, 'charts', 'castellan'), '-n', operatorNs, '--create-namespace', '-f', values, '--wait', '--timeout', '8m', '--kubeconfig', kube.kubeconfig],
      { timeout: 600_000 },
    );
    await apply(kube, workloads());
    await waitPodsReady(kube, ns, 'castellan.dev/class=counter', 3, 600_000);
    await waitPodsReady(kube, ns, 'castellan.dev/queue=jobs', 3, 600_000);
    const [c] = await waitPodsReady(kube, ns, 'app=caller', 1, 300_000);
    caller = `http://${c?.ip}:8080`;
    numbers.setupMs = Date.now() - t0;
  }, 1_800_000);

  afterAll(async () => {
    process.stdout.write(`pods-e2e numbers: ${JSON.stringify(numbers)}\n`);
    if (kube !== undefined && !disposed) await kube.dispose();
    if (!keepLogs) rmSync(dir, { recursive: true, force: true });
  }, 300_000);

  it('a call from the caller pod reaches the one owner, in another pod, and the hosts spread over both nodes', async () => {
    const hosts = await pods(kube as TestKube, ns, 'castellan.dev/class=counter');
    expect(new Set(hosts.map((h) => h.node)).size).toBe(2);
    for (let i = 1; i <= 20; i++) {
      const r = await call('POST', '/v1/objects/counter/e2e-1/increment');
      expect(r).toEqual({ status: 200, body: JSON.stringify({ value: i }) });
    }
    const owner = await ownerOf();
    expect(hosts.map((h) => h.name)).toContain(owner.name);
    // sidecar RSS in the image (node /usr/local/bin/castellan sidecar: object hosts, queue hosts, the caller's),
    // against an idle Node of the same image in the same run
    const rss = rssMiB('/usr/local/bin/castellan sidecar');
    numbers.sidecarRssMiB = { min: Math.min(...rss), max: Math.max(...rss), n: rss.length, idleNodeBaseline: rssMiB('castellan-rss-baseline')[0] };
  }, 300_000);

  it('a force-deleted owner pod fails over to another pod and no acknowledged increment is lost', async () => {
    const before = JSON.parse((await call('POST', '/v1/objects/counter/e2e-1/increment')).body) as { value: number };
    const owner = await ownerOf();
    const t0 = Date.now();
    await kubectl(['delete', 'pod', owner.name, '-n', ns, '--grace-period=0', '--force', '--wait=false']);
    let value = before.value;
    let failed = 0;
    // Failed calls since the last success: each may or may not have run (a call in flight when its host was
    // killed gets 504 "may or may not have been processed"), so the next success may count them too.
    let maybe = 0;
    let ranUnanswered = 0;
    let firstOk: number | undefined;
    while (firstOk === undefined || Date.now() - firstOk < 3_000) {
      const r = await call('POST', '/v1/objects/counter/e2e-1/increment');
      if (r.status !== 200) {
        failed++;
        maybe++;
        expect(Date.now() - t0).toBeLessThan(120_000);
        continue;
      }
      firstOk ??= Date.now();
      const v = (JSON.parse(r.body) as { value: number }).value;
      // No acknowledged increment is lost (never below value + 1), and nothing ran twice (never above what the
      // unanswered calls since the last success could add).
      expect(v).toBeGreaterThanOrEqual(value + 1);
      expect(v).toBeLessThanOrEqual(value + 1 + maybe);
      ranUnanswered += v - value - 1;
      value = v;
      maybe = 0;
    }
    numbers.failover = { ms: firstOk - t0, failedCalls: failed, unansweredThatRan: ranUnanswered };
    const next = await ownerOf();
    expect(next.name === owner.name && next.uid === owner.uid).toBe(false);
  }, 300_000);

  /**
   * Follows the sidecar and app logs of every Ready pod matching `selector` (pods that appear later too) into
   * `into`, until the returned function is called: the old pods' logs are gone with them otherwise.
   */
  function followLogs(selector: string, into: string): () => Promise<void> {
    const seen = new Set<string>();
    const children: ChildProcess[] = [];
    let polling = false;
    const timer = setInterval(() => {
      if (polling) return;
      polling = true;
      void pods(kube as TestKube, ns, selector)
        .then((list) => {
          for (const p of list.filter((x) => x.ready && !seen.has(x.uid))) {
            seen.add(p.uid);
            for (const c of ['castellan-sidecar', 'app']) {
              const fd = openSync(join(into, `${p.name}-${p.uid.slice(0, 8)}-${c}.log`), 'a');
              children.push(spawnOwned(toolPath('kubectl'), ['--kubeconfig', (kube as TestKube).kubeconfig, 'logs', '-f', '-n', ns, p.name, '-c', c], { stdio: ['ignore', fd, fd] }));
              closeSync(fd);
            }
          }
        })
        .catch(() => undefined)
        .finally(() => {
          polling = false;
        });
    }, 1_000);
    return async () => {
      clearInterval(timer);
      await Promise.all(children.map((c) => terminate(c, 'SIGTERM', 2_000)));
    };
  }

  it('kubectl rollout restart of the object hosts under continuous calls fails no call', async () => {
    let stop = false;
    let total = 0;
    let t0 = Date.now();
    const failures: string[] = [];
    const latencies: number[] = [];
    // 4 concurrent callers, each going round its own 8 objects (one call in flight per caller): every host owns some
    const worker = async (w: number) => {
      const expectedOf = new Map<string, number>();
      for (let i = 0; !stop; i++) {
        const id = `roll-${w}-${i % 8}`;
        const started = Date.now();
        const r = await call('POST', `/v1/objects/counter/${id}/increment`);
        total++;
        latencies.push(Date.now() - started);
        const at = `${((started - t0) / 1000).toFixed(1)}s+${Date.now() - started}ms`;
        if (r.status !== 200) {
          failures.push(`${at} ${id}: ${r.status} ${r.body.slice(0, 300)}`);
          continue;
        }
        const { value } = JSON.parse(r.body) as { value: number };
        const expected = (expectedOf.get(id) ?? 0) + 1;
        if (value !== expected) failures.push(`${at} ${id}: expected ${expected}, got ${value}`);
        expectedOf.set(id, value);
      }
    };
    const logs = join(dir, 'rollout-logs');
    mkdirSync(logs, { recursive: true });
    const stopLogs = followLogs('castellan.dev/class=counter', logs);
    const workers = [0, 1, 2, 3].map(worker);
    await sleep(3_000);
    t0 = Date.now();
    const before = total;
    await kubectl(['rollout', 'restart', 'statefulset/counter', '-n', ns]);
    await kubectl(['rollout', 'status', 'statefulset/counter', '-n', ns, '--timeout=15m'], 16 * 60_000);
    await waitPodsReady(kube as TestKube, ns, 'castellan.dev/class=counter', 3);
    numbers.rolloutMs = Date.now() - t0;
    const during = latencies.slice(before);
    await sleep(3_000);
    stop = true;
    await Promise.all(workers);
    await stopLogs();
    const drains = readdirSync(logs)
      .filter((f) => f.endsWith('castellan-sidecar.log'))
      .flatMap((f) => readFileSync(join(logs, f), 'utf8').split('\n'))
      .map((l) => /"message":"drained".*?"ms":(\d+)/.exec(l)?.[1])
      .filter((m): m is string => m !== undefined)
      .map(Number);
    numbers.rollout = {
      failed: failures.length,
      total,
      duringRollout: during.length,
      p50Ms: percentile(during, 50),
      p99Ms: percentile(during, 99),
      maxMs: Math.max(...during),
      drainMs: drains,
      ...(failures.length > 0 ? { logs } : {}),
      failures: failures.slice(0, 10),
    };
    keepLogs = failures.length > 0;
    expect(failures).toEqual([]);
    expect(during.length).toBeGreaterThan(100);
  }, 1_200_000);

  it('deleting a queue-host pod under load loses no acknowledged message', async () => {
    const acked = new Set<string>();
    const received = new Set<string>();
    let sending = true;
    let sendFailures = 0;
    const consumer = (async () => {
      for (;;) {
        const r = await call('POST', '/v1/queues/jobs/receive', { maxMessages: 10, waitSeconds: 1 });
        if (r.status === 200) {
          const { messages } = JSON.parse(r.body) as { messages: { body: string; receiptHandle: string }[] };
          for (const m of messages) {
            received.add(m.body);
            await call('DELETE', `/v1/queues/jobs/messages/${encodeURIComponent(m.receiptHandle)}`);
          }
        }
        if (!sending && [...acked].every((b) => received.has(b))) return;
      }
    })();
    for (let i = 0; i < 300; i++) {
      if (i === 100) await kubectl(['delete', 'pod', 'jobs-0', '-n', ns, '--wait=false']);
      const body = `m-${i}`;
      const r = await call('POST', '/v1/queues/jobs/messages', { body });
      if (r.status === 201) acked.add(body);
      else sendFailures++;
    }
    sending = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        consumer,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not received: ${[...acked].filter((b) => !received.has(b)).slice(0, 10).join(', ')}`)), 240_000);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    numbers.queue = { acked: acked.size, sendFailures, received: received.size };
    expect(acked.size).toBeGreaterThan(250);
  }, 600_000);

  it('deleting the operator leader hands leadership over, and the new leader reconciles', async () => {
    const holder = async () => (await kubectl(['get', 'lease', 'castellan', '-n', operatorNs, '-o', 'jsonpath={.spec.holderIdentity}'])).trim();
    const leader = await waitFor('an operator leader', async () => ((await holder()) === '' ? undefined : holder()), { timeoutMs: 120_000, intervalMs: 1_000 });
    const t0 = Date.now();
    await kubectl(['delete', 'pod', leader, '-n', operatorNs, '--wait=false']);
    const next = await waitFor(
      'another operator pod holding the lease',
      async () => {
        const h = await holder();
        const live = (await pods(kube as TestKube, operatorNs, 'app.kubernetes.io/name=castellan')).map((p) => p.name);
        return h !== '' && h !== leader && live.includes(h) ? h : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    numbers.leaderHandoverMs = Date.now() - t0;
    expect(next).not.toBe(leader);
    await apply(kube as TestKube, `apiVersion: castellan.dev/v1alpha1\nkind: ReplicatedQueue\nmetadata: {name: after-handover, namespace: ${ns}}\nspec: {hosts: 1, replicaCount: 1}\n`);
    await waitFor('the new leader to create the StatefulSet', async () => ((await kubectl(['get', 'statefulset', '-n', ns, '-o', 'name'])).includes('after-handover') ? true : undefined), {
      timeoutMs: 120_000,
      intervalMs: 1_000,
    });
  }, 400_000);

  it('cluster down leaves no process, mount, bridge, network namespace or iptables chain behind', async () => {
    const workdir = (kube as TestKube).cluster.workdir;
    disposed = true;
    await (kube as TestKube).dispose();
    expect(processesMatching(workdir)).toEqual([]);
    expect(mountsUnder(workdir)).toEqual([]);
    const links = readdirSync('/sys/class/net').filter((l) => l === hostBridge || /^cstl\d+$/.test(l));
    expect(links).toEqual([]);
    expect(existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => !netnsBefore.includes(n)) : []).toEqual([]);
    expect(kubeChains().filter((c) => !chainsBefore.includes(c))).toEqual([]);
  }, 300_000);
});
