/**
 * The long-running processes of real nodes (containerd, kubelet, kube-proxy):
 * started detached, so they outlive `castellan cluster up`, each with a pid
 * file that `down` (another process) reads. Stopping is synchronous (it also
 * runs in process-exit hooks) and reaches the whole process tree: containerd's
 * shims are re-parented away from containerd, so they are found by the
 * containerd socket on their command line, and the containers below them by
 * parent pid.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive } from '../../common/children.ts';

export function startDetached(opts: { name: string; command: string; args: string[]; pidDir: string; logDir: string; env?: NodeJS.ProcessEnv }): number {
  mkdirSync(opts.pidDir, { recursive: true });
  mkdirSync(opts.logDir, { recursive: true });
  const fd = openSync(join(opts.logDir, `${opts.name}.log`), 'a');
  try {
    const child = spawn(opts.command, opts.args, { detached: true, stdio: ['ignore', fd, fd], env: opts.env ?? process.env });
    if (child.pid === undefined) throw new Error(`${opts.name}: could not start ${opts.command}`);
    child.unref();
    writeFileSync(join(opts.pidDir, `${opts.name}.pid`), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** name -> pid of every pid file in the directory. */
export function readPids(pidDir: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(pidDir)) return out;
  for (const f of readdirSync(pidDir)) {
    if (!f.endsWith('.pid')) continue;
    const pid = Number(readFileSync(join(pidDir, f), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0) out.set(f.slice(0, -4), pid);
  }
  return out;
}

export function removePidFile(pidDir: string, name: string): void {
  rmSync(join(pidDir, `${name}.pid`), { force: true });
}

interface ProcInfo {
  pid: number;
  ppid: number;
  zombie: boolean;
  cmdline: string;
}

function processes(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      out.push({ pid: Number(d), ppid: Number(rest[1]), zombie: rest[0] === 'Z', cmdline });
    } catch {
      // exited while listing
    }
  }
  return out;
}

/** Live (non-zombie) processes whose command line contains `needle`. */
export function processesMatching(needle: string): number[] {
  return processes()
    .filter((p) => !p.zombie && p.pid !== process.pid && p.cmdline.includes(needle))
    .map((p) => p.pid);
}

/** The pids and every descendant of them. */
export function withDescendants(roots: number[]): number[] {
  const all = processes();
  const out = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!out.has(p.pid) && out.has(p.ppid)) {
        out.add(p.pid);
        grew = true;
      }
    }
  }
  return [...out];
}


export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGTERM, then SIGKILL after `graceMs`; returns once every pid is gone. */
export function stopSync(pids: number[], graceMs: number): void {
  const signal = (s: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, s);
      } catch {
        // gone
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isAlive) && Date.now() < deadline) sleepSync(50);
  if (pids.some(isAlive)) {
    signal('SIGKILL');
    const hard = Date.now() + 10_000;
    while (pids.some(isAlive) && Date.now() < hard) sleepSync(50);
  }
}
