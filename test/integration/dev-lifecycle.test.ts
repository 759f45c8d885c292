/**
 * `castellan dev` as a process supervisor (SPEC §4): object hosts with apps,
 * queue hosts, a worker app whose shell has a child of its own, and the client.
 * Checks the state file field by field, each child's environment, restarts
 * after kill -9 (with the state file following), readable prefixed logs,
 * SIGINT leaving no process behind, --no-restart, and failures to start.
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { alive, exitCode, http, pidsMatching, startDev, type DevRun, type ProcessEntry } from './dev-harness.ts';

function environ(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

describe('castellan dev supervising objects, queues and apps', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-life-'));
  const stateDir = join(dir, 'state');
  // A number no other process on this machine has on its command line: finds the worker's grandchild.
  const marker = String(900_000 + Math.floor(Math.random() * 99_999));
  let port: number;
  let dev: DevRun;

  beforeAll(async () => {
    port = await freePort();
    const app = join(projectRoot, 'test', 'harness', 'apps', 'counter-app.ts');
    writeFileSync(
      join(dir, 'dev.yaml'),
      [
        'nats: {embedded: {servers: 1}}',
        'objects:',
        `  counter: {hosts: 2, leaseTtl: 1s, app: {command: "${process.execPath} --disable-warning=ExperimentalWarning ${app}"}}`,
        'queues:',
        '  jobs: {hosts: 2, replicaCount: 2, visibilityTimeout: 45s, messageRetention: 1d, maxMessageBytes: 65536, delay: 1s, deadLetter: {queue: dead, maxReceiveCount: 3}}',
        '  dead: {hosts: 1, replicaCount: 1}',
        'apps:',
        `  worker: {command: "sh -c 'sleep ${marker} & wait'", queue: jobs, env: {EXTRA: "yes"}}`,
        `client: {port: ${port}}`,
        '',
      ].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], stateDir);
    await dev.ready();
  }, 180_000);

  afterAll(async () => {
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  const find = (name: string): ProcessEntry => {
    const p = dev.state().processes.find((x) => x.name === name);
    if (p === undefined) throw new Error(`${name} not in state.json`);
    return p;
  };

  it('lists every process in state.json exactly as SPEC §4 says', () => {
    const s = dev.state();
    expect(s.nats.urls).toHaveLength(1);
    const byName = Object.fromEntries(s.processes.map((p) => [p.name, p]));
    expect(Object.keys(byName).sort()).toEqual(['client', 'counter-0', 'counter-0-app', 'counter-1', 'counter-1-app', 'dead-0', 'jobs-0', 'jobs-1', 'worker-0'].sort());
    expect(byName['counter-0']).toMatchObject({ role: 'object-host', class: 'counter' });
    expect(byName['counter-1-app']).toMatchObject({ role: 'app', class: 'counter' });
    expect(byName['jobs-0']).toMatchObject({ role: 'queue-host', queue: 'jobs' });
    expect(byName['dead-0']).toMatchObject({ role: 'queue-host', queue: 'dead' });
    expect(byName['worker-0']).toMatchObject({ role: 'app', queue: 'jobs' });
    expect(byName.client).toEqual({ name: 'client', role: 'client', pid: expect.any(Number), httpPort: port });
    const pids = s.processes.map((p) => p.pid);
    const ports = s.processes.map((p) => p.httpPort);
    expect(new Set(pids).size).toBe(pids.length);
    expect(new Set(ports).size).toBe(ports.length);
    for (const pid of pids) expect(alive(pid)).toBe(true);
  });

  it('serves on every listed port and gives each child its environment', async () => {
    const s = dev.state();
    for (const p of s.processes.filter((x) => x.role !== 'app')) {
      expect((await http(`http://127.0.0.1:${p.httpPort}/healthz`)).status).toBe(200);
    }
    // Object apps listen on their PORT, which is the httpPort listed.
    expect((await http(`http://127.0.0.1:${find('counter-0-app').httpPort}/stats`)).status).toBe(200);
    const url = s.nats.urls.join(',');
    expect(environ(find('jobs-1').pid)).toMatchObject({
      CASTELLAN_ROLE: 'queue-host',
      POD_NAME: 'jobs-1',
      CASTELLAN_NATS_URL: url,
      CASTELLAN_HTTP_PORT: String(find('jobs-1').httpPort),
      CASTELLAN_QUEUE: 'jobs',
      CASTELLAN_QUEUE_HOSTS: '2',
      CASTELLAN_QUEUE_REPLICA_COUNT: '2',
      CASTELLAN_VISIBILITY_TIMEOUT: '45s',
      CASTELLAN_MESSAGE_RETENTION: '1d',
      CASTELLAN_MAX_MESSAGE_BYTES: '65536',
      CASTELLAN_QUEUE_DELAY: '1s',
      CASTELLAN_DEAD_LETTER_QUEUE: 'dead',
      CASTELLAN_MAX_RECEIVE_COUNT: '3',
    });
    expect(environ(find('dead-0').pid).CASTELLAN_DEAD_LETTER_QUEUE).toBeUndefined();
    expect(environ(find('counter-1').pid)).toMatchObject({
      CASTELLAN_ROLE: 'object-host',
      CASTELLAN_CLASS: 'counter',
      CASTELLAN_APP_PORT: String(find('counter-1-app').httpPort),
      CASTELLAN_LEASE_TTL: '1s',
    });
    expect(environ(find('counter-1-app').pid)).toMatchObject({
      PORT: String(find('counter-1-app').httpPort),
      CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${find('counter-1').httpPort}`,
    });
    expect(environ(find('worker-0').pid)).toMatchObject({
      PORT: String(find('worker-0').httpPort),
      CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${port}`,
      EXTRA: 'yes',
    });
    expect(environ(find('client').pid)).toMatchObject({ CASTELLAN_ROLE: 'client', CASTELLAN_HTTP_PORT: String(port) });
  }, 30_000);

  it('prints readable logs prefixed with each process name, and a ready banner', () => {
    const out = dev.output();
    expect(out).toMatch(/^counter-0 +\| \d\d:\d\d:\d\d\.\d{3} info +sidecar: sidecar listening/m);
    expect(out).toMatch(/^jobs-1 +\| /m);
    expect(out).toMatch(/^client +\| /m);
    expect(out).not.toMatch(/^counter-0 +\| \{"/m);
    expect(out).toContain('Castellan dev is ready.');
    expect(out).toContain(`curl http://127.0.0.1:${port}/v1/queues/jobs`);
  });

  it('restarts a queue host killed with -9 after about 2 s and updates state.json', async () => {
    const before = find('jobs-0');
    const t0 = Date.now();
    process.kill(before.pid, 'SIGKILL');
    const after = await waitFor(
      'jobs-0 restarted and healthy',
      async () => {
        const p = find('jobs-0');
        if (p.pid === before.pid || !alive(p.pid)) return undefined;
        return (await http(`http://127.0.0.1:${p.httpPort}/healthz`, {}, 2_000)).status === 200 ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500);
    expect(after.httpPort).toBe(before.httpPort);
    expect(alive(before.pid)).toBe(false);
  }, 90_000);

  it('kills a crashed app with everything it started, then restarts it', async () => {
    const before = find('worker-0');
    const grandchildren = await waitFor('the worker to start its sleep', async () => {
      const pids = pidsMatching(`sleep ${marker}`);
      return pids.length > 0 ? pids : undefined;
    });
    process.kill(before.pid, 'SIGKILL');
    await waitFor('the old sleep to be gone', async () => (grandchildren.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 10_000 });
    const after = await waitFor(
      'worker-0 restarted',
      async () => {
        const p = find('worker-0');
        return p.pid !== before.pid && alive(p.pid) && pidsMatching(`sleep ${marker}`, true).length === 1 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(after.httpPort).toBe(before.httpPort);
    expect(dev.output()).toMatch(/^worker-0 +\| exited \(signal SIGKILL\); restarting in 2s$/m);
  }, 60_000);

  it('stops every process on SIGINT and removes state.json', async () => {
    const s = dev.state();
    const pids = [...s.processes.map((p) => p.pid), ...pidsMatching(`sleep ${marker}`), ...pidsMatching(stateDir)];
    expect(pids.length).toBeGreaterThan(s.processes.length);
    dev.child.kill('SIGINT');
    expect(await exitCode(dev)).toBe(0);
    expect(existsSync(dev.statePath)).toBe(false);
    await waitFor('every child gone', async () => (pids.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 10_000 });
    expect(pidsMatching(stateDir)).toEqual([]);
    expect(pidsMatching(`sleep ${marker}`)).toEqual([]);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  }, 60_000);
});

describe('castellan dev failures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-dev-fail-'));

  const runToExit = async (yaml: string | undefined, extra: string[] = []) => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
    if (yaml !== undefined) writeFileSync(file, yaml);
    const dev = startDev(['-f', file, ...extra], join(dir, 'state-fail'));
    return { code: await exitCode(dev), output: dev.output() };
  };

  it.each([
    ['replicaCount above hosts', 'queues:\n  jobs: {hosts: 1, replicaCount: 2}\n', /queues\.jobs\.replicaCount: must be at most hosts \(1\)/],
    ['unknown queue field', 'queues:\n  jobs: {hosts: 3, replicas: 2}\n', /queues\.jobs: Unrecognized key: "replicas"/],
    ['retention too long', 'queues:\n  jobs: {messageRetention: 30d}\n', /queues\.jobs\.messageRetention: must be at most 14d/],
    ['dead letter to nowhere', 'queues:\n  jobs: {deadLetter: {queue: nope, maxReceiveCount: 2}}\n', /queues\.jobs\.deadLetter\.queue: queue "nope" is not defined/],
    ['object without app', 'objects:\n  counter: {hosts: 2}\n', /objects\.counter\.app/],
    ['bad class name', 'objects:\n  My_Counter: {app: {command: x}}\n', /objects\.My_Counter: bad name/],
    ['app without command', 'apps:\n  worker: {queue: jobs}\n', /apps\.worker\.command/],
  ])('exits 2 naming the field (%s)', async (_what, yaml, pattern) => {
    const r = await runToExit(yaml);
    expect(r.code).toBe(2);
    expect(r.output).toMatch(pattern);
    expect(r.output).toMatch(/Invalid configuration/);
  }, 90_000);

  it('exits 2 for a missing file or an unknown flag', async () => {
    const missing = await runToExit(undefined);
    expect(missing.code).toBe(2);
    expect(missing.output).toMatch(/not found/);
    const flag = await runToExit('client: {port: 3600}\n', ['--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.output).toMatch(/bogus/);
  }, 120_000);

  it('exits 1 with a clear message when the client port is taken', async () => {
    const port = await freePort();
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
    try {
      const r = await runToExit(`client: {port: ${port}}\n`);
      expect(r.code).toBe(1);
      expect(r.output).toMatch(new RegExp(`port ${port} on 127.0.0.1 is already in use`));
    } finally {
      blocker.close();
    }
  }, 90_000);

  it('does not restart a crashed child with --no-restart', async () => {
    const port = await freePort();
    writeFileSync(join(dir, 'norestart.yaml'), `client: {port: ${port}}\n`);
    const dev = startDev(['-f', join(dir, 'norestart.yaml'), '--no-restart'], join(dir, 'state-nr'));
    try {
      const s = await dev.ready();
      const client = s.processes.find((p) => p.role === 'client')!;
      process.kill(client.pid, 'SIGKILL');
      await waitFor('the exit to be reported', async () => (/client +\| exited \(signal SIGKILL\); not restarting/.test(dev.output()) ? true : undefined), { timeoutMs: 10_000 });
      // Longer than the restart delay: still no new client.
      await new Promise((r) => setTimeout(r, 3_500));
      expect(dev.state().processes.find((p) => p.role === 'client')!.pid).toBe(client.pid);
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await dev.stop();
    }
    expect(dev.child.exitCode).toBe(0);
  }, 120_000);

  it('leaves nothing behind when castellan dev itself is killed with -9 (the reaper stops its children)', async () => {
    const port = await freePort();
    const marker = String(800_000 + Math.floor(Math.random() * 99_999));
    const stateDir = join(dir, 'state-k9');
    writeFileSync(join(dir, 'k9.yaml'), `client: {port: ${port}}\napps:\n  sleeper: {command: "sh -c 'sleep ${marker} & wait'"}\n`);
    const dev = startDev(['-f', join(dir, 'k9.yaml')], stateDir);
    const s = await dev.ready();
    const pids = [...s.processes.map((p) => p.pid), ...pidsMatching(join(stateDir, 'nats'))];
    await waitFor('the sleeper to start its sleep', async () => (pidsMatching(`sleep ${marker}`, true).length === 1 ? true : undefined));
    pids.push(...pidsMatching(`sleep ${marker}`, true));
    expect(pids.length).toBeGreaterThanOrEqual(4);
    dev.child.kill('SIGKILL');
    await exitCode(dev);
    await waitFor('every child of the killed castellan dev to be gone', async () => (pids.every((p) => !alive(p)) ? true : undefined), { timeoutMs: 20_000, intervalMs: 200 });
    await waitFor('no process using its state directory', async () => (pidsMatching(stateDir).length === 0 ? true : undefined), { timeoutMs: 10_000 });
  }, 120_000);
});
