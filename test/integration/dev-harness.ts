/**
 * Helpers for the tests that drive `castellan dev` as a user would: the real
 * CLI as a child process, its state file read and checked field by field
 * against SPEC §4, and process liveness by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { exited, terminate } from '../../common/children.ts';
import { waitFor } from '../../common/net.ts';
import { projectRoot } from '../../common/paths.ts';

export const cli = join(projectRoot, 'bin', 'castellan.js');

/** state.json exactly as SPEC §4 fixes it: no field more, none less. */
const processSchema = z.union([
  z.object({ name: z.string().min(1), role: z.enum(['object-host', 'app']), class: z.string().min(1), pid: z.number().int().positive(), httpPort: z.number().int().min(1).max(65535) }).strict(),
  z.object({ name: z.string().min(1), role: z.enum(['queue-host', 'app']), queue: z.string().min(1), pid: z.number().int().positive(), httpPort: z.number().int().min(1).max(65535) }).strict(),
  z.object({ name: z.string().min(1), role: z.enum(['client', 'app']), pid: z.number().int().positive(), httpPort: z.number().int().min(1).max(65535) }).strict(),
]);
export const stateSchema = z
  .object({
    ready: z.literal(true),
    nats: z.object({ urls: z.array(z.string().regex(/^nats:\/\/127\.0\.0\.1:\d+$/)).min(1) }).strict(),
    processes: z.array(processSchema).min(1),
  })
  .strict();
export type State = z.infer<typeof stateSchema>;
export type ProcessEntry = State['processes'][number];

export interface DevRun {
  child: ChildProcess;
  output(): string;
  statePath: string;
  /** The state file, validated against SPEC §4. */
  state(): State;
  /** Waits for the state file; fails with the output tail if the process exits or it takes too long. */
  ready(timeoutMs?: number): Promise<State>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `castellan dev`; `detached` puts it in its own process group, like a shell does for a foreground job. */
export function startDev(args: string[], stateDir: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv; command?: string[]; detached?: boolean } = {}): DevRun {
  let out = '';
  const command = opts.command ?? [process.execPath, '--disable-warning=ExperimentalWarning', cli, 'dev'];
  const child = spawn(command[0] as string, [...command.slice(1), ...args, '--state-dir', stateDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd ?? projectRoot,
    env: { ...process.env, ...opts.env },
    detached: opts.detached ?? false,
  });
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  const statePath = join(stateDir, 'state.json');
  const state = (): State => stateSchema.parse(JSON.parse(readFileSync(statePath, 'utf8')));
  return {
    child,
    output: () => out,
    statePath,
    state,
    async ready(timeoutMs = 150_000) {
      await waitFor(
        'castellan dev to write state.json',
        async () => {
          if (child.exitCode !== null || child.signalCode !== null) throw new Error(`castellan dev exited (${child.exitCode ?? child.signalCode})`);
          return existsSync(statePath) ? true : undefined;
        },
        { timeoutMs, intervalMs: 250 },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n--- output ---\n${out.slice(-4000)}`);
      });
      return state();
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      await terminate(child, signal, 30_000);
    },
  };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of every process whose command line (args joined by spaces) contains `needle`, or equals it with `exact`. */
export function pidsMatching(needle: string, exact = false): number[] {
  const pids: number[] = [];
  for (const entry of readdirSafe('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (exact ? cmd === needle : cmd.includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Waits until `dev` has exited and returns its exit code. */
export async function exitCode(dev: DevRun): Promise<number | null> {
  await exited(dev.child);
  return dev.child.exitCode;
}

/** fetch with a timeout, returning status and parsed JSON (or text). */
export async function http(url: string, init: RequestInit = {}, timeoutMs = 30_000): Promise<{ status: number; body: unknown; text: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, text };
}

export function postJson(url: string, body: unknown, timeoutMs = 30_000): Promise<{ status: number; body: unknown; text: string }> {
  return http(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }, timeoutMs);
}
