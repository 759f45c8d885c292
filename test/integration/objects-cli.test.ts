/**
 * `castellan objects list|get|delete` against a running `castellan dev`
 * (embedded 3-node NATS, the counter example on 3 hosts), as a user would:
 * objects created through the client sidecar, then listed by the real CLI in
 * JSON and as a table and compared with what was created; one object
 * inspected and deleted; an alarm that fired is no longer shown; errors and
 * usage exit codes.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { compareKeys } from '../../sidecar/storage/keys.ts';
import { cli, http, postJson, startDev, type DevRun } from './dev-harness.ts';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function castellan(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', cli, ...args], {
      cwd: projectRoot,
      env: { ...process.env, CASTELLAN_SIDECAR_URL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface Listed {
  id: string;
  keys: number;
  bytes: number;
  alarm: number | null;
  host: string | null;
  lastWrite: string | null;
}

describe('castellan objects against castellan dev', () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-objects-'));
  let dev: DevRun;
  let sidecar: string;
  const ids = [
    'alice',
    'bob',
    'a b.c*>',
    'é',
    '\u{1F600}',
    '\uFF5E',
    'x/y',
    ...Array.from({ length: 300 }, (_, i) => `user-${String(i).padStart(3, '0')}`),
  ];
  const withAlarm = new Set(['bob', 'user-007']);

  beforeAll(async () => {
    const port = await freePort();
    sidecar = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'dev.yaml'),
      ['nats: {embedded: {servers: 3}}', 'objects:', '  counter: {hosts: 3, app: {command: "node examples/counter/app.js"}}', `client: {port: ${port}}`, ''].join('\n'),
    );
    dev = startDev(['-f', join(dir, 'dev.yaml')], join(dir, 'state'));
    await dev.ready(240_000);
    let next = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          const url = `${sidecar}/v1/objects/counter/${encodeURIComponent(id)}`;
          await waitFor(`increment ${id}`, async () => ((await postJson(`${url}/increment`, {})).status === 200 ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
          if (withAlarm.has(id)) expect((await postJson(`${url}/alarm-in`, { ms: 3_600_000 })).status).toBe(200);
        }
      }),
    );
  }, 400_000);

  afterAll(async () => {
    if (dev !== undefined) await dev.stop();
  }, 60_000);

  it('lists every created object in byte order, as JSON and as a table', async () => {
    const r = await castellan(['objects', 'list', 'counter', '-o', 'json', '--sidecar', sidecar]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const out = JSON.parse(r.stdout) as { objects: Listed[]; next: string | null };
    expect(out.next).toBeNull();
    expect(out.objects.map((o) => o.id)).toEqual([...ids].sort(compareKeys));
    for (const o of out.objects) {
      // The counter stores one key, "count" = "1".
      expect({ id: o.id, keys: o.keys, bytes: o.bytes }).toEqual({ id: o.id, keys: 1, bytes: 'count'.length + 1 });
      expect(o.alarm !== null).toBe(withAlarm.has(o.id));
      expect(o.host).toMatch(/^counter-\d$/);
    }
    const table = await castellan(['objects', 'list', 'counter', '--prefix', 'user-01', '--sidecar', sidecar], { CASTELLAN_SIDECAR_URL: sidecar });
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+KEYS\s+BYTES\s+ALARM\s+HOST\s+LAST WRITE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(ids.filter((id) => id.startsWith('user-01')).sort(compareKeys));
    const limited = await castellan(['objects', 'list', 'counter', '--limit', '3', '-o', 'json', '--sidecar', sidecar]);
    const page = JSON.parse(limited.stdout) as { objects: Listed[]; next: string | null };
    expect(page.objects.map((o) => o.id)).toEqual([...ids].sort(compareKeys).slice(0, 3));
    const rest = await castellan(['objects', 'list', 'counter', '--after', page.next!, '-o', 'json', '--sidecar', sidecar]);
    expect((JSON.parse(rest.stdout) as { objects: Listed[] }).objects.map((o) => o.id)).toEqual([...ids].sort(compareKeys).slice(3));
    const spaced = await castellan(['objects', 'list', 'counter', '--prefix', 'a b', '--sidecar', sidecar]);
    expect(spaced.stdout).toContain('"a b.c*>"');
  }, 120_000);

  it('shows one object with its keys, and deletes it', async () => {
    const get = await castellan(['objects', 'get', 'counter/x/y', '--sidecar', sidecar]);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/^id:\s+x\/y$/m);
    expect(get.stdout).toMatch(/^keys:\s+1$/m);
    expect(get.stdout).toMatch(/^host:\s+counter-\d$/m);
    expect(get.stdout).toMatch(/^count\s+\d+\s+1\s+"1"$/m);
    const asJson = JSON.parse((await castellan(['objects', 'get', 'counter/bob', '-o', 'json', '--sidecar', sidecar])).stdout) as Listed & { entries: { key: string; value: string }[] };
    expect(asJson).toMatchObject({ id: 'bob', keys: 1, alarm: expect.any(Number) });
    expect(asJson.entries).toEqual([{ key: 'count', value: Buffer.from('1').toString('base64'), version: expect.any(Number) }]);

    const del = await castellan(['objects', 'delete', 'counter/bob', '--sidecar', sidecar]);
    expect(del).toMatchObject({ code: 0, stdout: 'deleted counter/bob\n' });
    const gone = await castellan(['objects', 'get', 'counter/bob', '--sidecar', sidecar]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/404 OBJECT_NOT_FOUND/);
    const list = JSON.parse((await castellan(['objects', 'list', 'counter', '-o', 'json', '--sidecar', sidecar])).stdout) as { objects: Listed[] };
    expect(list.objects.map((o) => o.id)).not.toContain('bob');
    // The object starts afresh: its storage and alarm are gone.
    expect((await http(`${sidecar}/v1/objects/counter/bob`)).body).toEqual({ value: 0, alarms: 0 });
  }, 120_000);

  it('shows an alarm until it fires', async () => {
    const url = `${sidecar}/v1/objects/counter/${encodeURIComponent('soon')}`;
    expect((await postJson(`${url}/alarm-in`, { ms: 1_500 })).status).toBe(200);
    const before = (await http(`${sidecar}/v1/classes/counter/objects/soon`)).body as Listed;
    expect(before).toMatchObject({ id: 'soon', keys: 0, alarm: expect.any(Number) });
    await waitFor('the alarm to fire', async () => (((await http(url)).body as { alarms: number }).alarms === 1 ? true : undefined), { timeoutMs: 60_000, intervalMs: 250 });
    const after = await waitFor('the fired alarm to leave the summary', async () => {
      const o = (await http(`${sidecar}/v1/classes/counter/objects/soon`)).body as Listed;
      return o.alarm === null ? o : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250 });
    expect(after).toMatchObject({ keys: 1 });
  }, 120_000);

  it('exits 1 with the error for an unknown class, 2 for bad usage', async () => {
    const noClass = await castellan(['objects', 'list', 'nosuchclass', '--sidecar', sidecar]);
    expect(noClass.code).toBe(1);
    expect(noClass.stderr).toMatch(/404 CLASS_NOT_FOUND/);
    expect((await castellan(['objects', 'get', 'counter', '--sidecar', sidecar])).code).toBe(2);
    expect((await castellan(['objects', 'list', 'counter', '--limit', '0', '--sidecar', sidecar])).code).toBe(2);
    expect((await castellan(['objects', 'list', 'counter', '-o', 'yaml', '--sidecar', sidecar])).code).toBe(2);
    expect((await castellan(['objects', 'frobnicate', '--sidecar', sidecar])).code).toBe(2);
    const help = await castellan(['objects', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/castellan objects list counter/);
  }, 60_000);
});
