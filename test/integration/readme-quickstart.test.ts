/**
 * The README's quick start, run as written: the command in the block marked
 * `<!-- readme-test: start -->` (`npm start`), then every line of the block
 * marked `<!-- readme-test: try -->`, each checked against the answer the
 * README shows after `# →` (`…` stands for anything). Only the port differs:
 * `npm start -- --port P` and 127.0.0.1:3600 → 127.0.0.1:P, so the test can
 * run next to anything else on this machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { exited, terminate } from '../../common/children.ts';
import { freePort, waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';
import { alive, pidsMatching, stateSchema } from './dev-harness.ts';

/** The lines of the ```sh block that follows `<!-- readme-test: NAME -->`. */
export function readmeBlock(readme: string, name: string): string[] {
  const marker = `<!-- readme-test: ${name} -->`;
  const at = readme.indexOf(marker);
  if (at < 0) throw new Error(`README.md has no ${marker}`);
  const m = /^```sh\n([\s\S]*?)^```/m.exec(readme.slice(at + marker.length));
  if (m === null) throw new Error(`no \`\`\`sh block after ${marker}`);
  return (m[1] as string).split('\n').filter((l) => l.trim() !== '');
}

/** `command   # → expected` → the command and a regex of the expected output (`…` = anything). */
export function splitExpectation(line: string): { command: string; expected?: RegExp; shown?: string } {
  const m = /^(.*?)\s+# → (.*)$/.exec(line);
  if (m === null) return { command: line };
  const shown = m[2] as string;
  const pattern = shown
    .split('…')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return { command: m[1] as string, expected: new RegExp(pattern), shown };
}

function bash(command: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', command], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('README quick start', () => {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  const stateDir = join(mkdtempSync(join(tmpdir(), 'castellan-readme-')), 'state');
  const statePath = join(stateDir, 'state.json');
  let port: number;
  let env: NodeJS.ProcessEnv;
  let start: ChildProcess;
  let output = '';

  beforeAll(async () => {
    port = await freePort();
    // The node running this test (Node 24) and its npm come first on PATH, as scripts/lib.sh arranges for a user.
    env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, CASTELLAN_SIDECAR_URL: `http://127.0.0.1:${port}` };
    const [command, ...more] = readmeBlock(readme, 'start');
    expect(command).toBe('npm start');
    expect(more).toEqual([]);
    start = spawn('bash', ['-c', `${command} -- --port ${port} --state-dir ${stateDir}`], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    start.stdout?.on('data', (b: Buffer) => (output += b.toString()));
    start.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    await waitFor(
      'npm start to be ready',
      async () => {
        if (start.exitCode !== null) throw new Error(`npm start exited with ${start.exitCode}`);
        return existsSync(statePath) ? true : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 500 },
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${output.slice(-4000)}`);
    });
  }, 300_000);

  afterAll(async () => {
    for (const pid of pidsMatching(`--state-dir ${stateDir}`)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    if (start !== undefined) await terminate(start, 'SIGTERM', 30_000);
  }, 60_000);

  it('writes the SPEC state file', () => {
    const s = stateSchema.parse(JSON.parse(readFileSync(statePath, 'utf8')));
    expect(s.processes.find((p) => p.role === 'client')?.httpPort).toBe(port);
  });

  it('answers every quick-start command as the README shows', async () => {
    const lines = readmeBlock(readme, 'try');
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) {
      const { command, expected, shown } = splitExpectation(line);
      const run = command.replaceAll('127.0.0.1:3600', `127.0.0.1:${port}`);
      const r = await bash(run, env);
      const context = `README line: ${line}\nran: ${run}\nexit ${r.code}, output:\n${r.out}`;
      if (r.code !== 0) throw new Error(context);
      if (expected !== undefined && !expected.test(r.out)) throw new Error(`expected output matching ${shown}\n${context}`);
    }
  }, 240_000);

  it('shows the worker doing the queued job', async () => {
    await waitFor('the worker to log the job', async () => (/worker-0 +\| .*done sum=6; deleted/.test(output) ? true : undefined), { timeoutMs: 60_000, intervalMs: 500 });
  }, 90_000);

  it('stops everything on SIGTERM and removes the state file', async () => {
    const s = stateSchema.parse(JSON.parse(readFileSync(statePath, 'utf8')));
    const dev = pidsMatching('castellan.js dev').filter((pid) => pidsMatching(`--state-dir ${stateDir}`).includes(pid));
    expect(dev).toHaveLength(1);
    process.kill(dev[0]!, 'SIGTERM');
    await exited(start);
    expect(existsSync(statePath)).toBe(false);
    await waitFor('every process gone', async () => (s.processes.every((p) => !alive(p.pid)) && pidsMatching(stateDir).length === 0 ? true : undefined), {
      timeoutMs: 30_000,
    });
  }, 60_000);
});
