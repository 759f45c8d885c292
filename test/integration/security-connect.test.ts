/**
 * Castellan connects to a secured NATS (issue 16, item 1): real nats-servers
 * configured per test with a token, a user and password, an nkey, operator
 * mode with a creds file (JWT + nkey), TLS with a private CA and mutual TLS.
 * A sidecar (a real `castellan sidecar` process) given the right setting
 * becomes ready; given a wrong credential or certificate it exits at once
 * with a message saying so, instead of retrying forever. The operator's NATS
 * pool and `castellan dev` (`nats.auth`) take the same settings.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { connect } from '@nats-io/transport-node';
import { logger } from '../../common/logger.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { NatsStartupError } from '../../common/nats-security.ts';
import { projectRoot } from '../../common/paths.ts';
import { NatsCluster, type NatsServerSecurity } from '../../local/nats-cluster.ts';
import { runDev } from '../../local/dev/run.ts';
import { devConfigSchema } from '../../local/dev/config.ts';
import { NatsPool } from '../../operator/assets/nats-pool.ts';
import { makeOperatorMode, makePki, type OperatorMode, type Pki } from '../harness/security.ts';

const dir = mkdtempSync(join(tmpdir(), 'castellan-security-connect-'));
const cli = join(projectRoot, 'cli', 'main.ts');
const running: ChildProcess[] = [];
const clusters: NatsCluster[] = [];
let pki: Pki;
let opMode: OperatorMode;

interface Run {
  child: ChildProcess;
  port: number;
  output(): string;
  exit: Promise<number | null>;
}

async function sidecar(urls: string[], env: Record<string, string>): Promise<Run> {
  const port = await freePort();
  let out = '';
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CASTELLAN_NATS_')));
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', cli, 'sidecar'], {
    env: { ...clean, CASTELLAN_LOG_LEVEL: 'info', CASTELLAN_HTTP_PORT: String(port), CASTELLAN_NATS_URL: urls.join(','), POD_NAME: 'sec-client', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, port, output: () => out, exit };
}

async function ready(run: Run): Promise<void> {
  await waitFor(
    'the sidecar to be ready',
    async () => {
      if (run.child.exitCode !== null) throw new Error(`sidecar exited ${run.child.exitCode}: ${run.output().slice(-2000)}`);
      const res = await fetch(`http://127.0.0.1:${run.port}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.ok ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

/** The sidecar must exit non-zero on its own, quickly, naming the problem. */
async function refusedAtStart(run: Run, pattern: RegExp): Promise<string> {
  const code = await Promise.race([run.exit, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
  expect(code).not.toBe('hung');
  expect(code).toBe(1);
  const out = run.output();
  expect(out).toMatch(pattern);
  // One attempt, not a retry loop.
  expect(out.match(/sidecar start failed; retrying/g)).toBeNull();
  return out;
}

async function natsWith(name: string, security: NatsServerSecurity): Promise<NatsCluster> {
  const c = await NatsCluster.start({ servers: 1, dir: join(dir, name), security });
  clusters.push(c);
  return c;
}

beforeAll(async () => {
  pki = makePki(dir);
  opMode = await makeOperatorMode(dir);
}, 120_000);

afterAll(async () => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.allSettled(clusters.map((c) => c.shutdown()));
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('sidecar against a secured NATS', () => {
  it('token: the right token connects; a wrong or missing one is a start-up error', async () => {
    const nats = await natsWith('token', { auth: { token: 'tok-3f9a' } });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_TOKEN: 'tok-3f9a' });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    const out = await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_TOKEN: 'wrong' }), /cannot connect to NATS.*refused the credentials/);
    expect(out).not.toContain('tok-3f9a');
    await refusedAtStart(await sidecar(nats.urls, {}), /cannot connect to NATS.*refused the credentials/);
  }, 180_000);

  it('user and password', async () => {
    const nats = await natsWith('userpass', { auth: { user: 'castellan', password: 'pw-81c2' } });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_USER: 'castellan', CASTELLAN_NATS_PASSWORD: 'pw-81c2' });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    const out = await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_USER: 'castellan', CASTELLAN_NATS_PASSWORD: 'nope-7731' }), /cannot connect to NATS.*refused the credentials/);
    expect(out).not.toContain('nope-7731');
  }, 180_000);

  it('nkey seed file', async () => {
    const user = createUser();
    const other = createUser();
    const seed = join(dir, 'user.nk');
    const otherSeed = join(dir, 'other.nk');
    writeFileSync(seed, new TextDecoder().decode(user.getSeed()), { mode: 0o600 });
    writeFileSync(otherSeed, new TextDecoder().decode(other.getSeed()), { mode: 0o600 });
    const nats = await natsWith('nkey', { auth: { nkeys: [user.getPublicKey()] } });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_NKEY_SEED: seed });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_NKEY_SEED: otherSeed }), /cannot connect to NATS.*refused the credentials/);
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_NKEY_SEED: join(dir, 'missing.nk') }), /cannot read CASTELLAN_NATS_NKEY_SEED file/);
  }, 180_000);

  it('creds file (operator mode, user JWT + nkey) including the operator pool', async () => {
    const nats = await natsWith('creds', { config: opMode.config });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_CREDS: opMode.creds });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_CREDS: opMode.strangerCreds }), /cannot connect to NATS.*refused the credentials/);

    const log = logger('test.pool');
    const ok = new NatsPool('sec-test', log, { auth: { creds: opMode.creds }, tls: {} });
    await ok.preflight(nats.urls);
    expect(Object.values(await ok.states())).toEqual(['connected']);
    await ok.close();
    const bad = new NatsPool('sec-test', log, { auth: { creds: opMode.strangerCreds }, tls: {} });
    await expect(bad.preflight(nats.urls)).rejects.toBeInstanceOf(NatsStartupError);
    await bad.close();
  }, 180_000);

  it('TLS with a private CA: trusted connects, an unknown CA is a start-up error', async () => {
    const nats = await natsWith('tls', { tls: { cert: pki.serverCert, key: pki.serverKey } });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_TLS_CA: pki.ca });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_TLS_CA: pki.rogueCa }), /cannot connect to NATS.*TLS/);
    // Without a CA the system trust store does not know the private CA either.
    await refusedAtStart(await sidecar(nats.urls, {}), /cannot connect to NATS.*TLS/);
  }, 180_000);

  it('mutual TLS: a client certificate from the CA connects; none, or one from another CA, is a start-up error', async () => {
    const nats = await natsWith('mtls', { tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, verify: true } });
    const good = await sidecar(nats.urls, { CASTELLAN_NATS_TLS_CA: pki.ca, CASTELLAN_NATS_TLS_CERT: pki.clientCert, CASTELLAN_NATS_TLS_KEY: pki.clientKey });
    await ready(good);
    good.child.kill('SIGTERM');
    await good.exit;
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_TLS_CA: pki.ca, CASTELLAN_NATS_TLS_CERT: pki.rogueCert, CASTELLAN_NATS_TLS_KEY: pki.rogueKey }), /cannot connect to NATS.*TLS.*(CERTIFICATE_REQUIRED|UNKNOWN_CA)/);
    await refusedAtStart(await sidecar(nats.urls, { CASTELLAN_NATS_TLS_CA: pki.ca }), /cannot connect to NATS.*TLS.*(CERTIFICATE_REQUIRED|UNKNOWN_CA)/);
  }, 180_000);

  it('a NATS that is not up yet is waited for, not a start-up error', async () => {
    const port = await freePort();
    const run = await sidecar([`nats://127.0.0.1:${port}`], { CASTELLAN_NATS_TOKEN: 'tok-late' });
    await waitFor('the sidecar to say it waits', async () => (run.output().includes('NATS not reachable yet') ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    const nats = await NatsCluster.start({ servers: 1, dir: join(dir, 'late'), clientPorts: [port], security: { auth: { token: 'tok-late' } } });
    clusters.push(nats);
    await ready(run);
    run.child.kill('SIGTERM');
    await run.exit;
  }, 180_000);
});

describe('castellan dev with nats.auth', () => {
  it('the embedded NATS requires the token and the sidecars present it', async () => {
    const port = await freePort();
    const config = devConfigSchema.parse({ nats: { embedded: { servers: 1 }, auth: { token: 'dev-tok-55' } }, client: { port } });
    const dev = await runDev({ config, stateDir: join(dir, 'dev'), restart: false, output: { write: () => undefined }, readyTimeoutMs: 90_000 });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(res.status).toBe(200);
      await expect(connect({ servers: dev.state.nats.urls, reconnect: false })).rejects.toThrow(/Authorization/i);
      const nc = await connect({ servers: dev.state.nats.urls, token: 'dev-tok-55' });
      await nc.close();
    } finally {
      await dev.stop();
    }
  }, 180_000);
});
