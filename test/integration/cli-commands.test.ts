/**
 * The convenience commands against a running `castellan dev`: `castellan call`
 * on the counter example and `castellan queue send|receive|delete|stats|purge`
 * on a replicated queue, run as real processes; plus their errors and --help;
 * and `castellan nats-keys` against a real nats-server.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect, credsAuthenticator } from '@nats-io/transport-node';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { NatsCluster } from '../../local/nats-cluster.ts';
import { cli, startDev, type DevRun } from './dev-harness.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function castellan(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', cli, ...args], {
      cwd: projectRoot,
      env: { ...process.env, CASTELLAN_SIDECAR_URL: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const json = (r: Result): unknown => JSON.parse(r.stdout);

describe('castellan call and castellan queue against castellan dev', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-cli-'));
  let dev: DevRun;
  let sidecar: string;
  const id = `c${Date.now().toString(36)}`;

  beforeAll(async () => {
    const port = await freePort();
    sidecar = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'dev.yaml'),
      [
        'objects:',
        '  counter: {hosts: 2, app: {command: "node examples/counter/app.js"}}',
        'queues:',
        '  tasks: {hosts: 2, replicaCount: 2, visibilityTimeout: 30s}',
        `client: {port: ${port}}`,
        '',
      ].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], join(dir, 'state'));
    await dev.ready();
  }, 180_000);

  afterAll(async () => {
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  it('calls an object: POST with -X, GET by default, POST with -d', async () => {
    const inc = await castellan(['call', `counter/${id}/increment`, '-X', 'POST', '--sidecar', sidecar]);
    expect(inc).toMatchObject({ code: 0, stderr: '' });
    expect(json(inc)).toEqual({ value: 1 });
    const get = await castellan(['call', `counter/${id}`, '--sidecar', sidecar]);
    expect(json(get)).toEqual({ value: 1, alarms: 0 });
    const alarm = await castellan(['call', `counter/${id}/alarm-in`, '-d', '{"ms":600000}', '--sidecar', sidecar]);
    expect(alarm.code).toBe(0);
    expect(json(alarm)).toEqual({ at: expect.any(Number) });
  }, 60_000);

  it('encodes ids, passes headers, shows the status with -i and reads the sidecar from the environment', async () => {
    const odd = await castellan(['call', 'counter/a b.c*>/increment', '-X', 'post'], { env: { CASTELLAN_SIDECAR_URL: sidecar } });
    expect(odd.code).toBe(0);
    expect(json(odd)).toEqual({ value: 1 });
    const slash = await castellan(['call', 'counter/increment', '--id', 'x/y', '-X', 'POST', '-H', 'x-test: 1', '-i', '--sidecar', sidecar]);
    expect(slash.code).toBe(0);
    expect(slash.stdout).toMatch(/^HTTP 200 OK\n/);
    expect(slash.stdout).toMatch(/content-type: application\/json/);
    expect(slash.stdout).toMatch(/\{"value":1\}$/);
  }, 60_000);

  it('exits 1 and prints the error for a failed call, 2 for bad usage', async () => {
    const notFound = await castellan(['call', `counter/${id}/nope`, '--sidecar', sidecar]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toMatch(/404 NOT_FOUND: no route GET \/nope/);
    const noClass = await castellan(['call', `nosuchclass/${id}`, '--sidecar', sidecar]);
    expect(noClass.code).toBe(1);
    expect(noClass.stderr).toMatch(/404 CLASS_NOT_FOUND/);
    const usage = await castellan(['call', 'counter', '--sidecar', sidecar]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/missing object id/);
    const down = await castellan(['call', `counter/${id}`, '--sidecar', `http://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach the sidecar .*connection refused/);
  }, 60_000);

  it('sends, shows stats, receives and deletes on a queue', async () => {
    const sent = await castellan(['queue', 'send', 'tasks', 'hello world', '--attr', 'kind=greeting', '--sidecar', sidecar]);
    expect(sent.code).toBe(0);
    const { messageId, replicas } = json(sent) as { messageId: string; replicas: string[] };
    expect(replicas.sort()).toEqual(['tasks-0', 'tasks-1']);
    await waitFor(
      'stats to count the message',
      async () => {
        const stats = json(await castellan(['queue', 'stats', 'tasks', '--sidecar', sidecar])) as { name: string; replicaCount: number; approximateMessages: number };
        expect(stats).toMatchObject({ name: 'tasks', replicaCount: 2 });
        return stats.approximateMessages === 1 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    const got = await castellan(['queue', 'receive', 'tasks', '--max', '5', '--wait', '10', '--sidecar', sidecar]);
    expect(got.code).toBe(0);
    const { messages } = json(got) as { messages: { messageId: string; receiptHandle: string; body: string; attributes: Record<string, string>; receiveCount: number }[] };
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ messageId, body: 'hello world', attributes: { kind: 'greeting' }, receiveCount: 1 });
    const del = await castellan(['queue', 'delete', 'tasks', messages[0]!.receiptHandle, '--sidecar', sidecar]);
    expect(del).toMatchObject({ code: 0, stdout: '' });
    await waitFor(
      'the queue to be empty',
      async () => {
        const s = json(await castellan(['queue', 'stats', 'tasks', '--sidecar', sidecar])) as { approximateMessages: number; approximateInFlight: number };
        return s.approximateMessages === 0 && s.approximateInFlight === 0 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
  }, 90_000);

  it('sends from stdin, receives with --delete, and purges', async () => {
    const sent = await castellan(['queue', 'send', 'tasks', '-', '--replicas', '1', '--sidecar', sidecar], { input: '{"from":"stdin"}' });
    expect(sent.code).toBe(0);
    expect((json(sent) as { replicas: string[] }).replicas).toHaveLength(1);
    const got = await castellan(['queue', 'receive', 'tasks', '--wait', '10', '--delete', '--sidecar', sidecar]);
    expect((json(got) as { messages: { body: string }[] }).messages.map((m) => m.body)).toEqual(['{"from":"stdin"}']);
    for (let i = 0; i < 3; i++) expect((await castellan(['queue', 'send', 'tasks', `m${i}`, '--sidecar', sidecar])).code).toBe(0);
    expect((await castellan(['queue', 'purge', 'tasks', '--sidecar', sidecar])).code).toBe(0);
    await waitFor(
      'the deleted and purged messages to be gone',
      async () => {
        const s = json(await castellan(['queue', 'stats', 'tasks', '--sidecar', sidecar])) as { approximateMessages: number; approximateInFlight: number };
        return s.approximateMessages === 0 && s.approximateInFlight === 0 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
  }, 90_000);

  it('reports queue errors and bad usage', async () => {
    const missing = await castellan(['queue', 'stats', 'nosuchqueue', '--sidecar', sidecar]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/castellan queue stats: 404 [A-Z_]+/);
    const badAction = await castellan(['queue', 'shout', 'tasks']);
    expect(badAction.code).toBe(2);
    expect(badAction.stderr).toMatch(/expected an action: send, receive, delete, stats, purge/);
    const badMax = await castellan(['queue', 'receive', 'tasks', '--max', '50']);
    expect(badMax.code).toBe(2);
    expect(badMax.stderr).toMatch(/--max must be a number from 1 to 10/);
  }, 60_000);

  it.each([['dev'], ['sidecar'], ['cluster'], ['call'], ['queue']])('prints help for castellan %s --help', async (cmd) => {
    const r = await castellan([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: castellan ${cmd}`));
  }, 30_000);

  it('lists the commands with castellan --help', async () => {
    const r = await castellan(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['dev', 'sidecar', 'cluster', 'call', 'queue']) expect(r.stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
  }, 30_000);
});

describe('castellan nats-keys', () => {
  it('writes the operator-mode keys and server lines a real nats-server runs with, and never overwrites them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'castellan-nats-keys-'));
    const out = join(dir, 'keys');
    const r = await castellan(['nats-keys', '--dir', out, '--resolver-dir', join(dir, 'jwt'), '--callout-timeout', '1']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(readdirSync(out).sort()).toEqual(['callout.creds', 'issuer.seed', 'nats-operator.conf', 'operator-signing.seed', 'system.creds', 'xkey.seed']);
    expect(statSync(join(out, 'issuer.seed')).mode & 0o077).toBe(0);
    const nats = await NatsCluster.start({ servers: 1, dir: join(dir, 'nats'), security: { config: readFileSync(join(out, 'nats-operator.conf'), 'utf8') } });
    try {
      // The callout's and the system user's creds are accepted; a client without any becomes the default
      // sentinel and is sent to the callout, which is not running here: refused after the 1 s callout timeout.
      for (const creds of ['callout.creds', 'system.creds']) {
        const nc = await connect({ servers: nats.urls, authenticator: credsAuthenticator(readFileSync(join(out, creds))), timeout: 10_000 });
        await nc.flush();
        await nc.close();
      }
      await expect(connect({ servers: nats.urls, timeout: 10_000, reconnect: false })).rejects.toThrow(/Authorization Violation/);
    } finally {
      await nats.shutdown();
    }
    const again = await castellan(['nats-keys', '--dir', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/not empty: refusing to overwrite keys/);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
